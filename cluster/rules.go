package cluster

import (
	"fmt"
	"net"
	"net/url"
	"strconv"

	"github.com/pgha/pgha/config"
)

// The rules every part reads the view by: who may be promoted, how an LSN
// is written, where a member's Postgres is, where the pooler routes. Each
// has this one home; the HA loop, the REST API, pghactl and the daemon's
// adapters import it.

// CanPromote reports whether a member with tags may ever lead: not tagged
// nofailover, and failover_priority not 0.
func CanPromote(t config.Tags) bool {
	return !t.NoFailover && (t.FailoverPriority == nil || *t.FailoverPriority > 0)
}

// Priority is the failover_priority that breaks ties (1 when unset).
func Priority(t config.Tags) int {
	if t.FailoverPriority == nil {
		return 1
	}
	return *t.FailoverPriority
}

// WhyNotCandidate says why member m cannot be promoted in a switchover or
// failover request, "" when it can (Patroni's is_failover_possible): the
// leader itself, nofailover or priority 0, not running, or further behind
// the last leader optime than maximum_lag_on_failover.
func WhyNotCandidate(v View, m Member) string {
	switch {
	case m.Name == v.Leader:
		return "is the leader"
	case m.Tags.NoFailover:
		return "tagged nofailover"
	case !CanPromote(m.Tags):
		return "failover_priority is 0"
	case m.State != StateRunning && m.State != StateStreaming:
		return fmt.Sprintf("state is %q, not running", m.State)
	}
	maxLag := int64(v.Config.MaximumLagOnFailover)
	pos := max(m.ReplayLSN, m.ReceiveLSN, m.XLogLocation)
	if maxLag > 0 && v.Status.Optime > 0 && v.Status.Optime-pos > maxLag {
		return fmt.Sprintf("lags %d bytes behind the leader, more than maximum_lag_on_failover %d", v.Status.Optime-pos, maxLag)
	}
	return ""
}

// FormatLSN writes a WAL position as Postgres does (0/3000060).
func FormatLSN(lsn int64) string {
	return fmt.Sprintf("%X/%X", uint64(lsn)>>32, uint32(lsn))
}

// Endpoint is where a member's Postgres listens, from its conn_url.
type Endpoint struct {
	Host string
	Port int
}

// Addr is host:port.
func (e Endpoint) Addr() string { return net.JoinHostPort(e.Host, strconv.Itoa(e.Port)) }

// ParseConnURL reads a member's conn_url (postgres://host:port/db).
func ParseConnURL(connURL string) (Endpoint, error) {
	u, err := url.Parse(connURL)
	if err != nil {
		return Endpoint{}, fmt.Errorf("cluster: conn_url %q: %w", connURL, err)
	}
	host, port, err := net.SplitHostPort(u.Host)
	if err != nil {
		return Endpoint{}, fmt.Errorf("cluster: conn_url %q has no host:port: %w", connURL, err)
	}
	p, err := strconv.Atoi(port)
	if err != nil || p < 1 || p > 65535 {
		return Endpoint{}, fmt.Errorf("cluster: conn_url %q: bad port", connURL)
	}
	return Endpoint{Host: host, Port: p}, nil
}

// Targets are where a pooler routes: the primary's and the healthy
// replicas' host:port.
type Targets struct {
	Primary  string
	Replicas []string
}

// TargetsOf derives routing from a view: the leader's address while its
// member key says it runs as primary, and running replicas without
// noloadbalance.
func TargetsOf(v View) Targets {
	var t Targets
	for _, m := range v.Members {
		e, err := ParseConnURL(m.ConnURL)
		if err != nil {
			continue
		}
		running := m.State == StateRunning || m.State == StateStreaming
		switch {
		case m.Name == v.Leader && m.Role == RolePrimary && running:
			t.Primary = e.Addr()
		case m.Role == RoleReplica && running && !m.Tags.NoLoadBalance:
			t.Replicas = append(t.Replicas, e.Addr())
		}
	}
	return t
}
