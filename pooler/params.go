package pooler

import (
	"fmt"
	"slices"
	"strings"

	"github.com/pgha/pgha/config"
)

// Startup parameters and the settings that follow a client from one
// server connection to the next, as PgBouncer does (src/client.c,
// src/varcache.c):
//
//   - The tracked settings are client_encoding, DateStyle, TimeZone,
//     standard_conforming_strings and application_name, then
//     track_extra_parameters (default IntervalStyle). Names compare
//     without case.
//   - A client may set them in its startup packet, directly or as
//     "-c name=value" / "--name=value" inside options (what PGOPTIONS
//     sends). Settings given directly win over those in options, as in
//     Postgres. Any other startup parameter is refused with PgBouncer's
//     "unsupported startup parameter: NAME" unless it is listed in
//     ignore_startup_parameters; "options" in that list drops unknown
//     settings inside options. Anything else inside options ("-d 5") is
//     refused. Protocol extensions (_pq_.*) are ignored.
//   - When a client gets a server connection whose value differs, the
//     pooler sets the client's value first (one query, its answers
//     swallowed, sent with the client's first message). Settings
//     Postgres reports (ParameterStatus) update both sides as they
//     change. Settings it does not report (search_path before Postgres
//     18) are set from what the client sent at startup, and reset
//     (RESET) for a client that sent none: PgBouncer compares them only
//     when the server reports them, so on Postgres 15 it never applies
//     them; the pooler remembers what it set on each server connection.
//     A SET of such a setting by the client itself is not seen (use SET
//     LOCAL, or session mode).

// nTracked bounds the tracked settings (config.MaxTrackedParameters).
const nTracked = config.MaxTrackedParameters

// appNameIdx is application_name's index in the tracked settings.
const appNameIdx = 4

// trackIndex is the index of setting k among the tracked ones, or -1.
func (p *Pooler) trackIndex(k string) int {
	for i, n := range p.trackNames {
		if strings.EqualFold(n, k) {
			return i
		}
	}
	return -1
}

// unsupported is PgBouncer's refusal of a startup parameter, with the fix
// as a detail.
func unsupported(format, name string) error {
	return &loginError{code: codeProtocolViolation, msg: fmt.Sprintf(format, name),
		detail: "add it to pooler.track_extra_parameters to carry it to the server, or to pooler.ignore_startup_parameters to drop it"}
}

// ignored reports whether ignore_startup_parameters lists name.
func (p *Pooler) ignored(name string) bool {
	return slices.ContainsFunc(p.cfg.IgnoreStartupParameters, func(s string) bool { return strings.EqualFold(s, name) })
}

// startupSettings reads the tracked settings out of a client's startup
// parameters, refusing the ones the pooler can neither carry nor drop.
func (p *Pooler) startupSettings(params map[string]string) (*[nTracked]string, error) {
	var t [nTracked]string
	if opts, ok := params["options"]; ok {
		kvs, err := parseOptions(opts)
		if err != nil {
			return nil, err
		}
		for _, kv := range kvs {
			switch i := p.trackIndex(kv[0]); {
			case i >= 0:
				t[i] = kv[1]
			case p.ignored(kv[0]) || p.ignored("options"):
			default:
				return nil, unsupported("unsupported startup parameter in options: %s", kv[0])
			}
		}
	}
	for k, v := range params {
		switch {
		case k == "user" || k == "database" || k == "options" || strings.HasPrefix(k, "_pq_."):
		case k == "replication":
			if on, known := boolValue(v); !known || on || v == "database" {
				return nil, &loginError{code: codeFeatureNotSupp, msg: "unsupported startup parameter: replication",
					detail: "the pooler does not carry replication connections: connect to Postgres directly"}
			}
		default:
			if i := p.trackIndex(k); i >= 0 {
				t[i] = v
			} else if !p.ignored(k) {
				return nil, unsupported("unsupported startup parameter: %s", k)
			}
		}
	}
	return &t, nil
}

// boolValue reads a Postgres boolean; known is false for other words.
func boolValue(s string) (on, known bool) {
	switch strings.ToLower(s) {
	case "on", "true", "yes", "1", "t", "y":
		return true, true
	case "off", "false", "no", "0", "f", "n":
		return false, true
	}
	return false, false
}

// parseOptions splits the options startup parameter the way Postgres
// does (whitespace separates, a backslash takes the next character
// literally) and reads its "-c name=value" and "--name=value" settings.
func parseOptions(s string) ([][2]string, error) {
	var words []string
	var w strings.Builder
	inWord := false
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '\\' && i+1 < len(s):
			i++
			w.WriteByte(s[i])
			inWord = true
		case c == ' ' || c == '\t' || c == '\n' || c == '\r':
			if inWord {
				words = append(words, w.String())
				w.Reset()
				inWord = false
			}
		default:
			w.WriteByte(c)
			inWord = true
		}
	}
	if inWord {
		words = append(words, w.String())
	}
	bad := &loginError{code: codeProtocolViolation, msg: "unsupported options startup parameter: only '-c config=val' and '--config=val' are allowed"}
	var out [][2]string
	for i := 0; i < len(words); i++ {
		var kv string
		switch word := words[i]; {
		case word == "-c":
			if i+1 >= len(words) {
				return nil, bad
			}
			i++
			kv = words[i]
		case strings.HasPrefix(word, "-c"):
			kv = word[2:]
		case strings.HasPrefix(word, "--"):
			kv = word[2:]
		default:
			return nil, bad
		}
		k, v, ok := strings.Cut(kv, "=")
		if !ok || k == "" {
			return nil, bad
		}
		// Postgres accepts - for _ in names given this way.
		out = append(out, [2]string{strings.ReplaceAll(k, "-", "_"), v})
	}
	return out, nil
}

// quoteLiteral quotes s as an SQL string literal, as an escape string
// literal (E'...') when it holds a backslash.
func quoteLiteral(s string) string {
	q := "'" + strings.ReplaceAll(s, "'", "''") + "'"
	if strings.Contains(s, `\`) {
		return "E" + strings.ReplaceAll(q, `\`, `\\`)
	}
	return q
}

// quoteIdent quotes s as an SQL identifier.
func quoteIdent(s string) string { return `"` + strings.ReplaceAll(s, `"`, `""`) + `"` }

// paramSQL returns the statement that gives s the client's settings, ""
// when they agree, and records what s will then have; c.mu held.
// set_config takes a value as the configuration file would, so lists
// (search_path, DateStyle) keep their elements.
func (c *client) paramSQL(s *server) string {
	var b strings.Builder
	sel, reset := false, false
	for i, name := range c.p.trackNames {
		v, sv := c.tracked[i], s.tracked[i]
		if v == sv {
			continue
		}
		if v == "" {
			// A setting Postgres does not report, set on this server for
			// an earlier client: back to the server's default.
			reset = true
			continue
		}
		if !sel {
			b.WriteString("SELECT ")
			sel = true
		} else {
			b.WriteString(", ")
		}
		b.WriteString("pg_catalog.set_config(")
		b.WriteString(quoteLiteral(name))
		b.WriteString(", ")
		b.WriteString(quoteLiteral(v))
		b.WriteString(", false)")
		s.tracked[i] = v
	}
	if reset {
		if sel {
			b.WriteString(";")
		}
		for i, name := range c.p.trackNames {
			if c.tracked[i] == "" && s.tracked[i] != "" {
				b.WriteString("RESET ")
				b.WriteString(quoteIdent(name))
				b.WriteString(";")
				s.tracked[i] = ""
			}
		}
	}
	return b.String()
}
