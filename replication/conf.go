package replication

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"

	"github.com/jackc/pgx/v5"

	"github.com/pgha/pgha/config"
)

const (
	pghaConf      = "postgresql.pgha.conf"
	includeLine   = "include_if_exists = '" + pghaConf + "'\t# added by pgha"
	standbySignal = "standby.signal"
)

// conninfo is the libpq connection string a replica uses to stream from
// primary as the replication role. The password is included: the file
// is readable by os_user only.
func (in *Instance) conninfo(p Primary) string {
	r := in.cfg.Authentication.Replication
	kv := []string{
		"host=" + quoteConn(p.Host),
		"port=" + strconv.Itoa(p.Port),
		"user=" + quoteConn(r.Username),
	}
	if r.Password != "" {
		kv = append(kv, "password="+quoteConn(r.Password))
	}
	kv = append(kv, "application_name="+quoteConn(in.applicationName()), "connect_timeout=5",
		"sslmode=prefer", "keepalives=1", "keepalives_idle=5", "keepalives_interval=2", "keepalives_count=3")
	return strings.Join(kv, " ")
}

// applicationName is how this node appears in pg_stat_replication on its
// primary: the member name (SetApplicationName), else cluster_name, else
// the data directory's base name. in.confMu held.
func (in *Instance) applicationName() string {
	if in.appName != "" {
		return in.appName
	}
	if v := in.local["cluster_name"]; v != "" {
		return v
	}
	return filepath.Base(in.cfg.DataDir)
}

// quoteConn quotes a value for a libpq connection string: bare when it
// has nothing libpq's parser reads specially (whitespace ends a bare
// value), else in single quotes with \ and ' escaped by a backslash.
func quoteConn(s string) string {
	if s != "" && !strings.ContainsAny(s, " \t\n\v\f\r'\\") {
		return s
	}
	return "'" + strings.NewReplacer(`\`, `\\`, `'`, `\'`).Replace(s) + "'"
}

// quoteParam quotes a value for postgresql.conf as Postgres's
// configuration-file scanner reads it back (guc-file.l): in single
// quotes, ' doubled, \ escaped, and control characters (which cannot
// stand in a quoted string, a newline least of all) as backslash escapes.
// A NUL cannot be written at all.
func quoteParam(v string) (string, error) {
	if strings.IndexByte(v, 0) >= 0 {
		return "", errors.New("a NUL byte cannot be written into postgresql.conf")
	}
	var b strings.Builder
	b.WriteByte('\'')
	for i := 0; i < len(v); i++ {
		switch c := v[i]; {
		case c == '\'':
			b.WriteString("''")
		case c == '\\':
			b.WriteString(`\\`)
		case c == '\n':
			b.WriteString(`\n`)
		case c == '\r':
			b.WriteString(`\r`)
		case c == '\t':
			b.WriteString(`\t`)
		case c < 0x20 || c == 0x7f:
			fmt.Fprintf(&b, `\%03o`, c)
		default:
			b.WriteByte(c)
		}
	}
	b.WriteByte('\'')
	return b.String(), nil
}

// quoteLiteral quotes s as an SQL string constant in the escape form
// (E'...'), which reads backslashes the same way whatever
// standard_conforming_strings says.
func quoteLiteral(s string) string {
	return "E'" + strings.NewReplacer(`\`, `\\`, `'`, `''`).Replace(s) + "'"
}

// syncNames is synchronous_standby_names for members: all of them, FIRST N
// (quoted), "*" for ["*"], or "" for asynchronous replication.
func syncNames(members []string) string {
	if len(members) == 0 {
		return ""
	}
	if len(members) == 1 && members[0] == "*" {
		return "*" // any standby: commits wait until one connects
	}
	q := make([]string, len(members))
	for i, m := range members {
		q[i] = `"` + strings.ReplaceAll(m, `"`, `""`) + `"`
	}
	return fmt.Sprintf("FIRST %d (%s)", len(q), strings.Join(q, ", "))
}

// SetSyncStandby makes members (application names, in order of
// preference) the synchronous standbys of a running primary, or none:
// it rewrites the configuration and reloads when that changes anything.
func (in *Instance) SetSyncStandby(ctx context.Context, members []string) error {
	in.confMu.Lock()
	// The first call rewrites whatever a previous daemon left behind
	// in a running server's file.
	same := in.syncSet && slices.Equal(in.sync, members)
	in.sync, in.syncSet = slices.Clone(members), true
	in.confMu.Unlock()
	if same {
		return nil
	}
	return in.ApplyParameters(ctx)
}

// Streaming maps the application_name of each standby streaming from
// this primary to its sync_state (async, potential, sync, quorum).
func (in *Instance) Streaming(ctx context.Context) (map[string]string, error) {
	out := map[string]string{}
	err := in.withConn(ctx, func(ctx context.Context, c *pgx.Conn) error {
		rows, err := c.Query(ctx, "SELECT application_name, sync_state FROM pg_stat_replication WHERE state = 'streaming'")
		if err != nil {
			return err
		}
		var name, state string
		_, err = pgx.ForEachRow(rows, []any{&name, &state}, func() error {
			out[name] = state
			return nil
		})
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("replication: streaming standbys: %w", err)
	}
	return out, nil
}

// replicationLines returns the primary_conninfo and primary_slot_name
// lines of dir's postgresql.pgha.conf.
func (in *Instance) replicationLines(dir string) ([]string, error) {
	b, err := readDataFile(filepath.Join(dir, pghaConf))
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("replication: read %s: %w", pghaConf, err)
	}
	var keep []string
	for _, l := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(l, "primary_conninfo = ") || strings.HasPrefix(l, "primary_slot_name = ") {
			keep = append(keep, l)
		}
	}
	return keep, nil
}

// writeConfig writes postgresql.pgha.conf in dir, makes postgresql.conf
// include it, strips primary_conninfo/primary_slot_name from
// postgresql.auto.conf (it would override ours) and writes pg_hba.conf.
func (in *Instance) writeConfig(dir string, follow *Primary) error {
	return in.writeConfigKeep(dir, follow, false)
}

// writeConfigKeep is writeConfig; keep carries over the replication
// settings (primary_conninfo, primary_slot_name) dir's file has.
func (in *Instance) writeConfigKeep(dir string, follow *Primary, keep bool) error {
	if err := in.writeConfigOnce(dir, follow, keep); err != nil {
		return err
	}
	return in.checkClusterParams(dir)
}

// writeConfigOnce writes the files once, without checking them.
func (in *Instance) writeConfigOnce(dir string, follow *Primary, keep bool) error {
	in.confMu.Lock()
	defer in.confMu.Unlock()
	params := in.parameters(follow)
	var extra []string
	if keep {
		var err error
		if extra, err = in.replicationLines(dir); err != nil {
			return err
		}
	}
	keys := make([]string, 0, len(params))
	for k := range params {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var b bytes.Buffer
	b.WriteString("# Written by pgha: edits are overwritten. Set postgresql.parameters instead.\n")
	for _, k := range keys {
		q, err := quoteParam(params[k])
		if err != nil {
			return fmt.Errorf("replication: %s: %w", k, err)
		}
		fmt.Fprintf(&b, "%s = %s\n", k, q)
	}
	for _, l := range extra {
		b.WriteString(l + "\n")
	}
	if err := in.writeFile(filepath.Join(dir, pghaConf), b.Bytes(), 0o600); err != nil {
		return err
	}
	in.written = in.clusterSrc
	if err := in.ensureInclude(dir); err != nil {
		return err
	}
	if err := in.stripAutoConf(dir); err != nil {
		return err
	}
	return in.writeHBA(dir)
}

func (in *Instance) ensureInclude(dir string) error {
	path := filepath.Join(dir, "postgresql.conf")
	b, err := readDataFile(path)
	if err != nil {
		return fmt.Errorf("replication: read %s: %w", path, err)
	}
	for _, l := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(strings.TrimSpace(l), "include_if_exists = '"+pghaConf+"'") {
			return nil
		}
	}
	if len(b) > 0 && b[len(b)-1] != '\n' {
		b = append(b, '\n')
	}
	b = append(b, includeLine+"\n"...)
	return in.writeFile(path, b, 0o600)
}

func (in *Instance) stripAutoConf(dir string) error {
	path := filepath.Join(dir, "postgresql.auto.conf")
	b, err := readDataFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("replication: read %s: %w", path, err)
	}
	var out []string
	changed := false
	for _, l := range strings.Split(string(b), "\n") {
		k := strings.TrimSpace(strings.SplitN(l, "=", 2)[0])
		if k == "primary_conninfo" || k == "primary_slot_name" {
			changed = true
			continue
		}
		out = append(out, l)
	}
	if !changed {
		return nil
	}
	return in.writeFile(path, []byte(strings.Join(out, "\n")), 0o600)
}

// writeHBA writes pg_hba.conf: peer for os_user on the socket (and
// passwords for every role there when the pooler uses the socket), scram
// on loopback for the roles pgha uses, then postgresql.pg_hba verbatim.
func (in *Instance) writeHBA(dir string) error {
	a := in.cfg.Authentication
	// A line break in a role name or a pg_hba entry would start a rule
	// of its own.
	for what, v := range map[string]string{"os_user": in.user.name, "superuser": a.Superuser.Username,
		"replication": a.Replication.Username, "rewind": a.Rewind.Username} {
		if strings.ContainsFunc(v, isControl) {
			return fmt.Errorf("replication: %s role name %q contains a control character: pg_hba.conf cannot hold it", what, v)
		}
	}
	for i, l := range in.cfg.PgHBA {
		if strings.ContainsFunc(l, func(r rune) bool { return isControl(r) && r != '\t' }) {
			return fmt.Errorf("replication: postgresql.pg_hba[%d] %q contains a line break or control character: write one rule per entry", i, l)
		}
	}
	var b strings.Builder
	b.WriteString("# Written by pgha: edits are overwritten. Set postgresql.pg_hba instead.\n")
	fmt.Fprintf(&b, "local all %s peer\n", hbaName(in.user.name))
	if in.localPasswords.Load() {
		// The pooler's server connections over the socket (pooler.local_unix_socket).
		b.WriteString("local all all md5\n")
	}
	for _, n := range []string{"127.0.0.1/32", "::1/128"} {
		fmt.Fprintf(&b, "host all %s %s scram-sha-256\n", hbaName(a.Superuser.Username), n)
		if a.Replication.Username != "" {
			fmt.Fprintf(&b, "host replication %s %s scram-sha-256\n", hbaName(a.Replication.Username), n)
		}
		if a.Rewind.Username != "" {
			fmt.Fprintf(&b, "host all %s %s scram-sha-256\n", hbaName(a.Rewind.Username), n)
		}
	}
	for _, l := range in.cfg.PgHBA {
		b.WriteString(l + "\n")
	}
	return in.writeFile(filepath.Join(dir, "pg_hba.conf"), []byte(b.String()), 0o600)
}

// hbaName writes a role name as a pg_hba.conf token: in double quotes
// (" doubled) when it holds whitespace, a comma, a quote or #, starts
// with + or @ (group and file references) or is a keyword.
func hbaName(s string) string {
	switch {
	case s == "", strings.ContainsAny(s, " \t,\"#"), strings.HasPrefix(s, "+"), strings.HasPrefix(s, "@"),
		hbaKeywords[s]:
		return `"` + strings.ReplaceAll(s, `"`, `""`) + `"`
	}
	return s
}

var hbaKeywords = map[string]bool{"all": true, "sameuser": true, "samerole": true, "samegroup": true, "replication": true}

func isControl(r rune) bool { return r < 0x20 || r == 0x7f }

// setStandby creates or removes standby.signal in dir.
func (in *Instance) setStandby(dir string, on bool) error {
	path := filepath.Join(dir, standbySignal)
	if !on {
		if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("replication: remove %s: %w", path, err)
		}
		return nil
	}
	return in.writeFile(path, nil, 0o600)
}

// IsStandby reports whether standby.signal is present: the server starts
// (or runs) as a replica.
func (in *Instance) IsStandby() bool {
	_, err := os.Stat(filepath.Join(in.cfg.DataDir, standbySignal))
	return err == nil
}

// initdbArgs turns Patroni-style options into initdb flags. Options pgha
// controls itself are refused.
func initdbArgs(opts []any) ([]string, error) {
	var args []string
	reserved := map[string]bool{"pgdata": true, "D": true, "username": true, "U": true, "pwfile": true,
		"pwprompt": true, "W": true, "auth": true, "A": true, "auth-host": true, "auth-local": true, "data-checksums": true, "k": true}
	add := func(k, v string, flag bool) error {
		k = strings.TrimLeft(k, "-")
		if reserved[k] {
			if k == "data-checksums" || k == "k" {
				return nil // always on
			}
			return fmt.Errorf("replication: bootstrap.initdb option %q is set by pgha itself: remove it", k)
		}
		if flag {
			args = append(args, "--"+k)
		} else {
			args = append(args, "--"+k+"="+v)
		}
		return nil
	}
	for i, o := range opts {
		switch x := o.(type) {
		case string:
			if err := add(x, "", true); err != nil {
				return nil, err
			}
		case map[string]any:
			keys := make([]string, 0, len(x))
			for k := range x {
				keys = append(keys, k)
			}
			sort.Strings(keys)
			for _, k := range keys {
				if err := add(k, config.ParameterString(x[k]), false); err != nil {
					return nil, err
				}
			}
		case map[string]string:
			m := make(map[string]any, len(x))
			for k, v := range x {
				m[k] = v
			}
			a, err := initdbArgs([]any{m})
			if err != nil {
				return nil, err
			}
			args = append(args, a...)
		default:
			return nil, fmt.Errorf("replication: bootstrap.initdb[%d] is a %T: write a flag name (data-checksums) or a one-key mapping (encoding: UTF8)", i, o)
		}
	}
	return args, nil
}
