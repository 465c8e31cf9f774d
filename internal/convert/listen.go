package convert

import (
	"net"
	"strconv"
	"strings"

	"github.com/pgha/pgha/config"
)

// splitListen splits Patroni's listen value, "host[,host...]:port", into
// its hosts and port ("" when absent). IPv6 hosts come in brackets.
func splitListen(v string) ([]string, string) {
	v = strings.TrimSpace(v)
	hostPart, port := v, ""
	if i := strings.LastIndex(v, ":"); i >= 0 {
		// A bare IPv6 address ("::1") has colons but no port; with a port
		// it is bracketed ("[::1]:5432").
		bareIPv6 := strings.Count(v, ":") > 1 && !strings.Contains(v, "]")
		if _, err := strconv.Atoi(v[i+1:]); err == nil && !bareIPv6 {
			hostPart, port = v[:i], v[i+1:]
		}
	}
	var hosts []string
	for _, h := range strings.Split(hostPart, ",") {
		h = strings.Trim(strings.TrimSpace(h), "[]")
		if h != "" {
			hosts = append(hosts, h)
		}
	}
	return hosts, port
}

// wildcard reports whether a listen host means every address.
func wildcard(h string) bool { return h == "" || h == "*" || h == "0.0.0.0" || h == "::" }

// apiListen maps Patroni's restapi.listen to an address Go can bind:
// "*:8008" and ":8008" listen everywhere (":8008"), "0.0.0.0:8008" stays.
func (c *conv) apiListen(v string) string {
	hosts, port := splitListen(v)
	if port == "" {
		port = "8008"
	}
	switch {
	case len(hosts) == 0 || hosts[0] == "*":
		return ":" + port
	case len(hosts) > 1:
		c.note("restapi.listen", "%s names several addresses; pgha's REST API listens on one: wrote :%s (every address)", v, port)
		return ":" + port
	}
	return joinHostPort(hosts[0], port)
}

// pgListen maps Patroni's postgresql.listen ("*:5432", "0.0.0.0:5432",
// "127.0.0.1,10.0.0.5:5432") to pgha's one host:port. Several addresses
// become "*" (every address): pgha sets listen_addresses from one host.
func (c *conv) pgListen(v string) string {
	hosts, port := splitListen(v)
	if port == "" {
		port = "5432"
	}
	switch {
	case len(hosts) == 0:
		return "*:" + port
	case len(hosts) > 1:
		for _, h := range hosts {
			if wildcard(h) {
				return "*:" + port
			}
		}
		c.note("postgresql.listen", "%s names several addresses; pgha sets listen_addresses from one host: wrote *:%s "+
			"(every address); keep pg_hba.conf strict, or name the one address clients use", v, port)
		return "*:" + port
	case hosts[0] == "*":
		return "*:" + port
	}
	return joinHostPort(hosts[0], port)
}

// connectFrom derives a connect address from a listen address, as
// Patroni does when connect_address is absent; a wildcard host becomes
// this machine's name (Options.Hostname), with a note.
func (c *conv) connectFrom(key, listen string) string {
	host, port, err := net.SplitHostPort(listen)
	if err != nil {
		return listen
	}
	if !wildcard(host) {
		return listen
	}
	name := c.opt.Hostname
	if name == "" {
		name = "localhost"
	}
	c.note(key, "missing while the listen address %s is a wildcard: wrote %s; other nodes must reach it there", listen, net.JoinHostPort(name, port))
	return net.JoinHostPort(name, port)
}

// loopbackListen reports whether a REST listen address is loopback only.
func loopbackListen(listen string) bool { return config.IsLoopback(listen) }

func hasPort(h string) bool {
	_, _, err := net.SplitHostPort(h)
	return err == nil
}

func joinHostPort(h, port string) string { return net.JoinHostPort(strings.Trim(h, "[]"), port) }
