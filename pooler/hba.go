package pooler

import (
	"fmt"
	"net"
	"slices"
	"strings"
)

// hbaRule is one "host DATABASE USER ADDRESS METHOD" line. As in
// pg_hba.conf, "host" matches TCP clients with or without TLS, "hostssl"
// only those that negotiated TLS, "hostnossl" only those that did not,
// and "local" Unix-socket clients.
type hbaRule struct {
	typ     string
	dbs     []string
	users   []string
	network *net.IPNet // nil: all
	method  string
}

func parseHBA(lines []string) ([]hbaRule, error) {
	var out []hbaRule
	for i, l := range lines {
		f := strings.Fields(l)
		if len(f) != 5 {
			return nil, fmt.Errorf("pooler: hba rule %d %q: write \"host DATABASE USER ADDRESS METHOD\"", i, l)
		}
		switch f[0] {
		case "host", "hostssl", "hostnossl", "local":
		default:
			return nil, fmt.Errorf("pooler: hba rule %d %q: type %q is not host, hostssl, hostnossl or local", i, l, f[0])
		}
		r := hbaRule{typ: f[0], dbs: strings.Split(f[1], ","), users: strings.Split(f[2], ","), method: f[4]}
		switch r.method {
		case "trust", "reject", "md5", "scram-sha-256", "plain", "password":
		default:
			return nil, fmt.Errorf("pooler: hba rule %d: method %q is not trust, reject, md5, scram-sha-256 or password", i, r.method)
		}
		if r.method == "password" {
			r.method = "plain"
		}
		if f[3] != "all" {
			cidr := f[3]
			if !strings.Contains(cidr, "/") {
				if strings.Contains(cidr, ":") {
					cidr += "/128"
				} else {
					cidr += "/32"
				}
			}
			_, n, err := net.ParseCIDR(cidr)
			if err != nil {
				return nil, fmt.Errorf("pooler: hba rule %d: address %q: %v", i, f[3], err)
			}
			r.network = n
		}
		out = append(out, r)
	}
	return out, nil
}

// hbaMethod returns the auth method for this client: auth_type when no hba
// rules are configured, else the first matching rule's.
func (p *Pooler) hbaMethod(c *client, db, user string) (string, error) {
	p.mu.Lock()
	rules := p.hba
	p.mu.Unlock()
	if len(rules) == 0 {
		return p.cfg.AuthType, nil
	}
	var ip net.IP
	local := true
	if host, _, err := net.SplitHostPort(c.conn.RemoteAddr().String()); err == nil {
		ip, local = net.ParseIP(host), false
	}
	for _, r := range rules {
		switch r.typ {
		case "local":
			if !local {
				continue
			}
		case "host":
			if local {
				continue
			}
		case "hostssl": // only clients that logged in over TLS
			if local || !c.tls {
				continue
			}
		case "hostnossl": // only clients that did not
			if local || c.tls {
				continue
			}
		default:
			continue
		}
		if !slices.Contains(r.dbs, "all") && !slices.Contains(r.dbs, db) {
			continue
		}
		if !slices.Contains(r.users, "all") && !slices.Contains(r.users, user) {
			continue
		}
		if r.network != nil && (ip == nil || !r.network.Contains(ip)) {
			continue
		}
		if r.method == "reject" {
			break
		}
		return r.method, nil
	}
	return "", &loginError{code: codeInvalidAuthSpec, msg: fmt.Sprintf("no hba rule for host %q, user %q, database %q", c.conn.RemoteAddr().String(), user, db)}
}
