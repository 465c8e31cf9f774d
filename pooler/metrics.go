package pooler

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics exposes pool state and counters as a prometheus.Collector.
type metrics struct {
	p *Pooler

	wait prometheus.Histogram
	// panics counts connections closed after a recovered panic (a bug);
	// refusedLogins connections refused by max_pending_logins.
	panics, refusedLogins prometheus.Counter

	clientsActive, clientsWaiting, serversActive, serversIdle *prometheus.Desc
	xact, query, recv, sent, waitTotal                        *prometheus.Desc
	clients, paused, pendingLogins                            *prometheus.Desc
}

func newMetrics(p *Pooler) *metrics {
	pl := []string{"database", "user", "port"}
	d := func(name, help string, labels []string) *prometheus.Desc {
		return prometheus.NewDesc("pgha_pooler_"+name, help, labels, nil)
	}
	return &metrics{
		p: p,
		wait: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "pgha_pooler_client_wait_seconds", Help: "Time clients waited for a server connection.",
			Buckets: []float64{.0001, .0005, .001, .005, .01, .05, .1, .5, 1, 5, 30},
		}),
		panics: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "pgha_pooler_panics_total",
			Help: "Client connections closed after a panic in their goroutines (a bug: the log has the stack).",
		}),
		refusedLogins: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "pgha_pooler_refused_logins_total",
			Help: "Connections refused because max_pending_logins connections were logging in.",
		}),
		pendingLogins:  d("pending_logins", "Connections accepted that have not logged in yet.", nil),
		clientsActive:  d("clients_active", "Clients linked to a pool (logged in).", pl),
		clientsWaiting: d("clients_waiting", "Clients waiting for a server connection.", pl),
		serversActive:  d("servers_active", "Server connections in use.", pl),
		serversIdle:    d("servers_idle", "Idle server connections.", pl),
		xact:           d("transactions_total", "Transactions pooled.", pl),
		query:          d("queries_total", "Queries pooled.", pl),
		recv:           d("received_bytes_total", "Bytes received from servers.", pl),
		sent:           d("sent_bytes_total", "Bytes sent to servers.", pl),
		waitTotal:      d("client_wait_seconds_total", "Total time clients waited for a server.", pl),
		clients:        d("client_connections", "Client connections open (all pools and the console).", nil),
		paused:         d("paused", "1 while the pooler is paused.", nil),
	}
}

func (m *metrics) observeWait(d time.Duration) { m.wait.Observe(d.Seconds()) }

// Collector returns the pooler's metrics for the daemon's /metrics registry.
func (p *Pooler) Collector() prometheus.Collector { return p.metrics }

// Describe implements prometheus.Collector.
func (m *metrics) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{m.clientsActive, m.clientsWaiting, m.serversActive, m.serversIdle,
		m.xact, m.query, m.recv, m.sent, m.waitTotal, m.clients, m.paused, m.pendingLogins} {
		ch <- d
	}
	m.wait.Describe(ch)
	m.panics.Describe(ch)
	m.refusedLogins.Describe(ch)
}

// Collect implements prometheus.Collector.
func (m *metrics) Collect(ch chan<- prometheus.Metric) {
	g, c := prometheus.GaugeValue, prometheus.CounterValue
	for _, pl := range m.p.poolList() {
		port := "rw"
		if pl.key.readOnly {
			port = "ro"
		}
		lv := []string{pl.key.db, pl.key.user, port}
		active, idle, waiting, _ := pl.counts()
		ch <- prometheus.MustNewConstMetric(m.clientsActive, g, float64(pl.nclients.Load()), lv...)
		ch <- prometheus.MustNewConstMetric(m.clientsWaiting, g, float64(waiting), lv...)
		ch <- prometheus.MustNewConstMetric(m.serversActive, g, float64(active), lv...)
		ch <- prometheus.MustNewConstMetric(m.serversIdle, g, float64(idle), lv...)
		ch <- prometheus.MustNewConstMetric(m.xact, c, float64(pl.stats.xact.Load()), lv...)
		ch <- prometheus.MustNewConstMetric(m.query, c, float64(pl.stats.query.Load()), lv...)
		ch <- prometheus.MustNewConstMetric(m.recv, c, float64(pl.stats.recvBytes.Load()), lv...)
		ch <- prometheus.MustNewConstMetric(m.sent, c, float64(pl.stats.sentBytes.Load()), lv...)
		ch <- prometheus.MustNewConstMetric(m.waitTotal, c, time.Duration(pl.stats.waitNanos.Load()).Seconds(), lv...)
	}
	ch <- prometheus.MustNewConstMetric(m.clients, g, float64(m.p.nclients.Load()))
	p := 0.0
	if m.p.paused.Load() {
		p = 1
	}
	ch <- prometheus.MustNewConstMetric(m.paused, g, p)
	ch <- prometheus.MustNewConstMetric(m.pendingLogins, g, float64(m.p.pending.Load()))
	m.wait.Collect(ch)
	m.panics.Collect(ch)
	m.refusedLogins.Collect(ch)
}
