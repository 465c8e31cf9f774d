package restapi

import (
	"context"
	"errors"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/pgha/pgha/cluster"
)

// HAMetrics are the counters and histogram the daemon feeds.
type HAMetrics struct {
	// Failovers counts automatic and manual failovers this node saw
	// through (pgha_failovers_total).
	Failovers prometheus.Counter
	// Switchovers counts switchovers (pgha_switchovers_total).
	Switchovers prometheus.Counter
	// LoopDuration observes each HA loop cycle
	// (pgha_ha_loop_duration_seconds).
	LoopDuration prometheus.Histogram
}

// ObserveLoop records one HA loop cycle's duration.
func (m *HAMetrics) ObserveLoop(d time.Duration) { m.LoopDuration.Observe(d.Seconds()) }

// gauge describes one Patroni gauge and how to read it.
type gauge struct {
	desc  *prometheus.Desc
	kind  prometheus.ValueType
	value func(f facts) float64
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

func unixOr0(t *time.Time) float64 {
	if t == nil || t.IsZero() {
		return 0
	}
	return float64(t.UnixNano()) / 1e9
}

// statusCollector computes Patroni's /metrics gauges from the node's
// facts at scrape time.
type statusCollector struct {
	s      *Server
	gauges []gauge
	lag    *prometheus.Desc
}

func newStatusCollector(s *Server) *statusCollector {
	labels := []string{"scope", "name"}
	g := func(name, help string, kind prometheus.ValueType, fn func(f facts) float64) gauge {
		return gauge{desc: prometheus.NewDesc(name, help, labels, nil), kind: kind, value: fn}
	}
	G, C := prometheus.GaugeValue, prometheus.CounterValue
	queried := func(fn func(f facts) float64) func(f facts) float64 {
		return func(f facts) float64 {
			if !f.st.Queried {
				return 0
			}
			return fn(f)
		}
	}
	return &statusCollector{s: s, lag: prometheus.NewDesc("pgha_replication_lag_bytes",
		"Bytes each replica's replay position is behind the leader's last optime, as published in etcd.",
		[]string{"scope", "member"}, nil),
		gauges: []gauge{
			g("patroni_version", "Patroni semver without periods (pgha's version).", G, func(f facts) float64 { return paddedVersion(f.st.Version) }),
			g("patroni_postgres_running", "Value is 1 if Postgres is running, 0 otherwise.", G, func(f facts) float64 { return b2f(f.st.State == cluster.StateRunning) }),
			g("patroni_postmaster_start_time", "Epoch seconds since Postgres started.", G, queried(func(f facts) float64 { return unixOr0(&f.st.PostmasterStartTime) })),
			g("patroni_primary", "Value is 1 if this node is the leader, 0 otherwise.", G, func(f facts) float64 { return b2f(f.st.Role == cluster.RolePrimary) }),
			g("patroni_xlog_location", "Current location of the Postgres transaction log, 0 if this node is not the leader.", C, queried(func(f facts) float64 {
				if f.st.Role != cluster.RolePrimary {
					return 0
				}
				return float64(f.st.XLogLocation)
			})),
			g("patroni_standby_leader", "Value is 1 if this node is the standby_leader, 0 otherwise.", G, func(f facts) float64 { return b2f(f.st.Role == cluster.RoleStandbyLeader) }),
			g("patroni_replica", "Value is 1 if this node is a replica, 0 otherwise.", G, func(f facts) float64 { return b2f(f.st.Role == cluster.RoleReplica) }),
			g("patroni_sync_standby", "Value is 1 if this node is a sync standby, 0 otherwise.", G, func(f facts) float64 { return b2f(f.isSyncStandby()) }),
			g("patroni_quorum_standby", "Value is 1 if this node is a quorum standby, 0 otherwise.", G, func(facts) float64 { return 0 }),
			g("patroni_xlog_received_location", "Current location of the received Postgres transaction log, 0 if this node is not a replica.", C, queried(func(f facts) float64 {
				if f.st.Role == cluster.RolePrimary {
					return 0
				}
				return float64(f.st.ReceivedLocation)
			})),
			g("patroni_xlog_replayed_location", "Current location of the replayed Postgres transaction log, 0 if this node is not a replica.", C, queried(func(f facts) float64 {
				if f.st.Role == cluster.RolePrimary {
					return 0
				}
				return float64(f.st.ReplayedLocation)
			})),
			g("patroni_xlog_replayed_timestamp", "Current timestamp of the replayed Postgres transaction log, 0 if null.", G, queried(func(f facts) float64 { return unixOr0(f.st.ReplayedTimestamp) })),
			g("patroni_xlog_paused", "Value is 1 if the Postgres xlog is paused, 0 otherwise.", G, queried(func(f facts) float64 { return b2f(f.st.ReplayPaused) })),
			g("patroni_postgres_streaming", "Value is 1 if Postgres is streaming, 0 otherwise.", G, func(f facts) float64 { return b2f(f.st.ReplicationState == "streaming") }),
			g("patroni_postgres_in_archive_recovery", "Value is 1 if Postgres is replicating from archive, 0 otherwise.", G, func(f facts) float64 { return b2f(f.st.ReplicationState == "in archive recovery") }),
			g("patroni_postgres_server_version", "Version of Postgres (if running), 0 otherwise.", G, queried(func(f facts) float64 { return float64(f.st.ServerVersion) })),
			g("patroni_cluster_unlocked", "Value is 1 if the cluster is unlocked, 0 if locked.", G, func(f facts) float64 { return b2f(!f.dcsOK || f.view.Leader == "") }),
			g("patroni_failsafe_mode_is_active", "Value is 1 if failsafe mode is active, 0 if inactive.", G, func(facts) float64 { return 0 }),
			g("patroni_postgres_timeline", "Postgres timeline of this node (if running), 0 otherwise.", G, queried(func(f facts) float64 { return float64(f.st.Timeline) })),
			g("patroni_dcs_last_seen", "Epoch timestamp when DCS was last contacted successfully by Patroni.", G, func(f facts) float64 {
				if f.st.DCSLastSeen.IsZero() {
					return 0
				}
				return float64(f.st.DCSLastSeen.Unix())
			}),
			g("patroni_pending_restart", "Value is 1 if the node needs a restart, 0 otherwise.", G, func(f facts) float64 { return b2f(f.st.PendingRestart || len(f.st.PendingRestartReason) > 0) }),
			g("patroni_is_paused", "Value is 1 if auto failover is disabled, 0 otherwise.", G, func(f facts) float64 { return b2f(f.paused()) }),
			g("patroni_failover_priority", "Failover priority of this node.", G, func(f facts) float64 {
				switch {
				case f.st.Tags.NoFailover:
					return 0
				case f.st.Tags.FailoverPriority != nil:
					return float64(*f.st.Tags.FailoverPriority)
				}
				return 1
			}),
		}}
}

// paddedVersion is Patroni's "3.0.2" -> 030002.
func paddedVersion(v string) float64 {
	var sb strings.Builder
	for _, p := range strings.Split(strings.TrimPrefix(v, "v"), ".") {
		p, _, _ = strings.Cut(p, "-")
		if len(p) < 2 {
			sb.WriteString("0")
		}
		sb.WriteString(p)
	}
	n, err := strconv.ParseFloat(sb.String(), 64)
	if err != nil {
		return 0
	}
	return n
}

// Describe implements prometheus.Collector.
func (c *statusCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, g := range c.gauges {
		ch <- g.desc
	}
	ch <- c.lag
}

// Collect implements prometheus.Collector.
func (c *statusCollector) Collect(ch chan<- prometheus.Metric) {
	f := c.s.facts(context.Background())
	for _, g := range c.gauges {
		ch <- prometheus.MustNewConstMetric(g.desc, g.kind, g.value(f), f.st.Scope, f.st.Name)
	}
	if !f.dcsOK {
		return
	}
	optime := f.view.Status.Optime
	for _, m := range f.view.Members {
		if m.Name == f.view.Leader || optime == 0 {
			continue
		}
		pos := max(m.ReplayLSN, m.XLogLocation)
		if pos == 0 {
			continue
		}
		ch <- prometheus.MustNewConstMetric(c.lag, prometheus.GaugeValue, float64(max(optime-pos, 0)), f.view.Scope, m.Name)
	}
}

// registerMetrics registers the node's collectors, the HA metrics and the
// Go runtime and process collectors (skipping ones already registered).
func registerMetrics(reg *prometheus.Registry, s *Server) (*HAMetrics, error) {
	m := &HAMetrics{
		Failovers:   prometheus.NewCounter(prometheus.CounterOpts{Name: "pgha_failovers_total", Help: "Failovers requested through this node's API or carried out by its HA loop."}),
		Switchovers: prometheus.NewCounter(prometheus.CounterOpts{Name: "pgha_switchovers_total", Help: "Switchovers requested through this node's API or carried out by its HA loop."}),
		LoopDuration: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "pgha_ha_loop_duration_seconds", Help: "Duration of one HA loop cycle.",
			Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10}}),
	}
	for _, c := range []prometheus.Collector{newStatusCollector(s), m.Failovers, m.Switchovers, m.LoopDuration,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{})} {
		if err := reg.Register(c); err != nil {
			var are prometheus.AlreadyRegisteredError
			if errors.As(err, &are) {
				continue
			}
			return nil, errors.Join(errors.New("restapi: register metrics"), err)
		}
	}
	return m, nil
}

func metricsHandler(reg *prometheus.Registry) http.HandlerFunc {
	h := promhttp.HandlerFor(reg, promhttp.HandlerOpts{Timeout: 10 * time.Second})
	return h.ServeHTTP
}
