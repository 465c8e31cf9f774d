package convert

import (
	"path/filepath"
	"strings"
	"time"

	"github.com/pgha/pgha/callback"
	"github.com/pgha/pgha/config"
)

// managedParams are Postgres settings pgha derives itself; a value in
// postgresql.parameters would be ignored or contradict postgresql.listen.
var managedParams = map[string]string{
	"listen_addresses":          "pgha sets it from postgresql.listen",
	"port":                      "pgha sets it from postgresql.listen",
	"primary_conninfo":          "pgha points replicas at the leader itself",
	"primary_slot_name":         "pgha names each replica's slot itself (use_slots)",
	"synchronous_standby_names": "pgha sets it in synchronous_mode",
}

// postgresql converts the postgresql section.
func (c *conv) postgresql(m map[string]any) {
	pg := c.out.sub("postgresql")
	listen := "127.0.0.1:5432"
	if v, ok := pop(m, "listen"); ok && v != nil {
		listen = c.pgListen(scalar(v))
	}
	pg.set("listen", listen)
	connect := ""
	if v, ok := pop(m, "connect_address"); ok && v != nil {
		connect = scalar(v)
	}
	if connect == "" {
		connect = c.connectFrom("postgresql.connect_address", listenForConnect(listen))
	}
	pg.set("connect_address", connect)
	if v, ok := pop(m, "data_dir"); ok && v != nil {
		dir := scalar(v)
		if !filepath.IsAbs(dir) && c.opt.BaseDir != "" {
			abs := filepath.Join(c.opt.BaseDir, dir)
			c.note("postgresql.data_dir", "%s is relative (Patroni resolves it against the directory it runs in): wrote %s; check it", dir, abs)
			dir = abs
		}
		pg.set("data_dir", dir)
	}
	if v, ok := pop(m, "bin_dir"); ok && scalar(v) != "" {
		pg.set("bin_dir", scalar(v))
	}
	if v, ok := pop(m, "parameters"); ok {
		params := section(c, "postgresql.parameters", v)
		if p := c.parameters("postgresql.parameters", params); len(p) > 0 {
			pg.set("parameters", p)
		}
	}
	if v, ok := pop(m, "pg_hba"); ok && v != nil {
		pg.set("pg_hba", stringList(listOnly(v)))
	}
	if v, ok := pop(m, "authentication"); ok {
		c.authentication(pg, section(c, "postgresql.authentication", v))
	}
	if v, ok := pop(m, "pg_ctl_timeout"); ok && v != nil {
		if d, ok := c.duration("postgresql.pg_ctl_timeout", v); ok {
			pg.set("pg_ctl_timeout", d)
		}
	}
	if v, ok := pop(m, "callbacks"); ok {
		c.callbacks(pg, section(c, "postgresql.callbacks", v))
	}
	// Node-level use_pg_rewind/use_slots (older Patroni) belong to the
	// cluster's dynamic configuration in pgha.
	for _, k := range []string{"use_pg_rewind", "use_slots"} {
		if v, ok := pop(m, k); ok && v != nil {
			c.nodeDCS = append(c.nodeDCS, kv{k, truthy(v)})
		}
	}
	for _, k := range []string{"remove_data_directory_on_rewind_failure", "remove_data_directory_on_diverged_timelines"} {
		if v, ok := pop(m, k); ok && !truthy(v) {
			c.note("postgresql."+k, "pgha always re-clones with pg_basebackup when pg_rewind fails")
		}
	}
	// create_replica_methods names further sections (pg_clonecluster,
	// wal_e, ...): each is a method pgha does not have.
	for _, k := range []string{"create_replica_methods", "create_replica_method"} {
		if v, ok := pop(m, k); ok {
			for _, method := range stringList(listOnly(v)) {
				if method == "basebackup" {
					continue
				}
				if _, ok := pop(m, method); ok {
					c.note("postgresql."+method, "replica creation method %s is not supported: pgha clones with pg_basebackup", method)
				} else {
					c.note("postgresql."+k, "replica creation method %s is not supported: pgha clones with pg_basebackup", method)
				}
			}
		}
	}
	c.leftovers("postgresql", m)
}

// callbacks copies Patroni's callback commands; pgha runs them the same
// way (`command action role scope`, split into words as shlex does).
func (c *conv) callbacks(pg *omap, m map[string]any) {
	for _, k := range []string{"on_start", "on_stop", "on_restart", "on_reload", "on_role_change"} {
		v, ok := pop(m, k)
		if !ok || v == nil {
			continue
		}
		path := "postgresql.callbacks." + k
		if !isScalar(v) {
			c.note(path, "want one command line (a string): left out")
			continue
		}
		cmd := scalar(v)
		if strings.TrimSpace(cmd) == "" {
			continue
		}
		pg.sub("callbacks").set(k, cmd)
		if _, err := callback.Split(cmd); err != nil {
			c.note(path, "carried, but %v: neither Patroni nor pgha can run it; fix the quoting", err)
		}
	}
	c.leftovers("postgresql.callbacks", m)
}

// listenForConnect turns pgha's "*:5432" into a form net.SplitHostPort
// and connectFrom read as a wildcard.
func listenForConnect(listen string) string {
	if len(listen) > 1 && listen[0] == '*' {
		return "0.0.0.0" + listen[1:]
	}
	return listen
}

// listOnly passes lists through and wraps a lone scalar.
func listOnly(v any) any {
	if l, ok := v.([]any); ok {
		return l
	}
	return []any{v}
}

// parameters copies Postgres settings, leaving out the ones pgha sets.
func (c *conv) parameters(path string, params map[string]any) map[string]any {
	out := map[string]any{}
	for _, k := range sortedKeys(params) {
		if why, managed := managedParams[k]; managed {
			c.note(path+"."+k, "%s", why)
			continue
		}
		v := params[k]
		if !isScalar(v) {
			c.note(path+"."+k, "want a single value, got %T: left out", v)
			continue
		}
		out[k] = v
	}
	return out
}

// authentication copies the superuser, replication and rewind roles.
func (c *conv) authentication(pg *omap, a map[string]any) {
	out := pg.sub("authentication")
	for _, role := range []string{"superuser", "replication", "rewind"} {
		v, ok := pop(a, role)
		if !ok {
			continue
		}
		path := "postgresql.authentication." + role
		r := section(c, path, v)
		o := out.sub(role)
		if u, ok := pop(r, "username"); ok && u != nil {
			o.set("username", scalar(u))
		}
		pw, ok := pop(r, "password")
		if ok && scalar(pw) != "" {
			o.set("password", scalar(pw))
		} else if role == "superuser" {
			c.note(path+".password", "empty: pgha logs in to Postgres over TCP with a password; set one (Patroni could use the Unix socket instead)")
		}
		for _, k := range sortedKeys(r) {
			c.note(path+"."+k, "pgha connects to Postgres without TLS or GSSAPI options: left out")
			delete(r, k)
		}
	}
	c.leftovers("postgresql.authentication", a)
}

// bootstrap converts bootstrap.dcs and bootstrap.initdb.
func (c *conv) bootstrap(m map[string]any) {
	b := c.out.sub("bootstrap")
	dcs, _ := pop(m, "dcs")
	c.dcs(b.sub("dcs"), section(c, "bootstrap.dcs", dcs))
	if v, ok := pop(m, "initdb"); ok && v != nil {
		if l, ok := v.([]any); ok {
			b.set("initdb", l)
		} else {
			c.note("bootstrap.initdb", "want a list of options: left out")
		}
	}
	if v, ok := pop(m, "pg_hba"); ok && v != nil {
		c.pgHBAFallback("bootstrap.pg_hba", v)
	}
	if v, ok := pop(m, "method"); ok {
		method := scalar(v)
		if _, ok := pop(m, method); ok || method != "initdb" {
			c.note("bootstrap."+method, "custom bootstrap methods are not supported: pgha bootstraps with initdb")
		}
	}
	c.leftovers("bootstrap", m)
}

// pgHBAFallback uses pg_hba lines from bootstrap sections when the node's
// postgresql.pg_hba is not set (pgha writes pg_hba.conf from the node).
func (c *conv) pgHBAFallback(path string, v any) {
	pg := c.out.sub("postgresql")
	if _, ok := pg.get("pg_hba"); ok {
		c.note(path, "postgresql.pg_hba is set and wins: these lines were left out")
		return
	}
	pg.set("pg_hba", stringList(listOnly(v)))
}

// dcs converts bootstrap.dcs, the seed of etcd's config key.
func (c *conv) dcs(d *omap, m map[string]any) {
	durations := []struct{ from, to string }{{"ttl", "ttl"}, {"loop_wait", "loop_wait"}, {"retry_timeout", "retry_timeout"},
		{"primary_start_timeout", "master_start_timeout"}, {"master_start_timeout", "master_start_timeout"}}
	for _, k := range durations {
		if v, ok := pop(m, k.from); ok && v != nil {
			if dur, ok := c.duration("bootstrap.dcs."+k.from, v); ok {
				d.set(k.to, dur)
			}
		}
	}
	if v, ok := pop(m, "maximum_lag_on_failover"); ok && v != nil {
		if n, err := config.ParseSize(scalar(v)); err == nil {
			d.set("maximum_lag_on_failover", int64(n))
		} else {
			c.note("bootstrap.dcs.maximum_lag_on_failover", "%v: left out", err)
		}
	}
	if v, ok := pop(m, "synchronous_mode"); ok && v != nil {
		if strings.EqualFold(scalar(v), "quorum") {
			d.set("synchronous_mode", true)
			c.note("bootstrap.dcs.synchronous_mode", "quorum commit (ANY n) is not supported: wrote synchronous_mode: true, "+
				"where commits wait for the first synchronous_node_count standbys (FIRST n) and only those may be promoted")
		} else {
			d.set("synchronous_mode", truthy(v))
		}
	}
	for _, k := range []string{"synchronous_mode_strict", "pause"} {
		if v, ok := pop(m, k); ok && v != nil {
			d.set(k, truthy(v))
		}
	}
	if v, ok := pop(m, "synchronous_node_count"); ok && v != nil {
		if n, ok := intValue(v); ok && n >= 1 {
			d.set("synchronous_node_count", n)
		} else {
			c.note("bootstrap.dcs.synchronous_node_count", "%q is not an integer of 1 or more: left out (pgha keeps 1)", scalar(v))
		}
	}
	if v, ok := pop(m, "slots"); ok && v != nil {
		c.slots(d, section(c, "bootstrap.dcs.slots", v))
	}
	if v, ok := pop(m, "ignore_slots"); ok && v != nil {
		c.ignoreSlots(d, v)
	}
	out := d.sub("postgresql")
	for _, x := range c.nodeDCS {
		out.set(x.k, x.v)
	}
	if v, ok := pop(m, "postgresql"); ok {
		p := section(c, "bootstrap.dcs.postgresql", v)
		for _, k := range []string{"use_pg_rewind", "use_slots"} {
			if x, ok := pop(p, k); ok && x != nil {
				out.set(k, truthy(x))
			}
		}
		if x, ok := pop(p, "parameters"); ok {
			if params := c.parameters("bootstrap.dcs.postgresql.parameters", section(c, "bootstrap.dcs.postgresql.parameters", x)); len(params) > 0 {
				out.set("parameters", params)
			}
		}
		if x, ok := pop(p, "pg_hba"); ok && x != nil {
			c.pgHBAFallback("bootstrap.dcs.postgresql.pg_hba", x)
		}
		for _, k := range []string{"remove_data_directory_on_rewind_failure", "remove_data_directory_on_diverged_timelines"} {
			if x, ok := pop(p, k); ok && !truthy(x) {
				c.note("bootstrap.dcs.postgresql."+k, "pgha always re-clones with pg_basebackup when pg_rewind fails")
			}
		}
		c.leftovers("bootstrap.dcs.postgresql", p)
	}
	c.fixTimings(d)
	c.leftovers("bootstrap.dcs", m)
}

// fixTimings keeps the converted timings within pgha's rules: ttl >=
// loop_wait + 2*retry_timeout (HA rule 1) and master_start_timeout <=
// 10*ttl, raising ttl or lowering the timeout with a note.
func (c *conv) fixTimings(d *omap) {
	get := func(k string, def time.Duration) time.Duration {
		if v, ok := d.get(k); ok {
			if dur, err := config.ParseDuration(v.(string)); err == nil {
				return dur.D()
			}
		}
		return def
	}
	def := config.DefaultDynamic()
	ttl, loop, retry := get("ttl", def.TTL.D()), get("loop_wait", def.LoopWait.D()), get("retry_timeout", def.RetryTimeout.D())
	if need := loop + 2*retry; ttl < need {
		c.note("bootstrap.dcs.ttl", "%s is less than loop_wait + 2*retry_timeout, which pgha refuses (a leader could lose its lease before it notices): wrote %s", ttl, need)
		ttl = need
		d.set("ttl", need.String())
	}
	if st := get("master_start_timeout", def.MasterStartTimeout.D()); st > 10*ttl {
		c.note("bootstrap.dcs.primary_start_timeout", "%s is longer than 10*ttl, which pgha refuses: wrote %s", st, 10*ttl)
		d.set("master_start_timeout", (10 * ttl).String())
	}
}

// duration reads Patroni's seconds (30, 0.5, "10s") as a pgha duration
// string.
func (c *conv) duration(key string, v any) (string, bool) {
	d, err := config.ParseDuration(scalar(v))
	if err != nil {
		c.note(key, "%v: left out", err)
		return "", false
	}
	return d.D().String(), true
}
