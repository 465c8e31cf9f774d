package convert

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"

	"gopkg.in/yaml.v3"
)

// Options tune a conversion.
type Options struct {
	// Source names the Patroni file in the output's header comment.
	Source string
	// BaseDir resolves a relative postgresql.data_dir, as Patroni resolves
	// it against the directory it runs in; "" leaves it relative (pgha
	// then refuses it).
	BaseDir string
	// Hostname fills a connect_address Patroni would derive from a
	// wildcard listen address.
	Hostname string
	// Env are KEY=VALUE strings; the PATRONI_* ones override the file as
	// Patroni's environment configuration does (Docker and Kubernetes
	// deployments set most keys this way).
	Env []string
}

// Note is one Patroni key that was not carried over as it was, and why.
type Note struct {
	Key    string
	Reason string
}

func (n Note) String() string { return n.Key + ": " + n.Reason }

// Result is a converted configuration.
type Result struct {
	// YAML is the pgha node configuration.
	YAML []byte
	// Notes lists, one per key, what could not be carried over.
	Notes []Note
}

// conv holds one conversion's output and notes.
type conv struct {
	opt   Options
	out   *omap
	notes []Note
	// nodeDCS are node-level keys of older Patroni files that pgha keeps
	// in bootstrap.dcs.postgresql (use_pg_rewind, use_slots).
	nodeDCS []kv
}

type kv struct {
	k string
	v any
}

func (c *conv) note(key, format string, args ...any) {
	c.notes = append(c.notes, Note{Key: key, Reason: fmt.Sprintf(format, args...)})
}

// Convert reads a Patroni YAML configuration and returns the pgha one.
// The error is for input that is not a YAML mapping; everything else
// that cannot be carried over is a Note.
func Convert(data []byte, opt Options) (Result, error) {
	var root map[string]any
	if err := yaml.Unmarshal(data, &root); err != nil {
		return Result{}, fmt.Errorf("convert: the Patroni file is not valid YAML: %w", err)
	}
	if root == nil {
		root = map[string]any{}
	}
	c := &conv{opt: opt, out: newOmap()}
	applyEnv(c, root, opt.Env)
	c.top(root)
	n, err := c.out.node()
	if err != nil {
		return Result{}, err
	}
	src := opt.Source
	if src == "" {
		src = "a Patroni configuration"
	}
	n.HeadComment = "pgha node configuration converted from " + src + " by pgha convert.\n" +
		"Keys that could not be carried over were listed on its stderr, one per line."
	var buf bytes.Buffer
	enc := yaml.NewEncoder(&buf)
	enc.SetIndent(2)
	if err := enc.Encode(n); err != nil {
		return Result{}, fmt.Errorf("convert: write YAML: %w", err)
	}
	if err := enc.Close(); err != nil {
		return Result{}, fmt.Errorf("convert: write YAML: %w", err)
	}
	return Result{YAML: buf.Bytes(), Notes: c.notes}, nil
}

// top converts the whole file, section by section, in node1.yml's order.
func (c *conv) top(root map[string]any) {
	for _, k := range []string{"scope", "namespace", "name"} {
		if v, ok := pop(root, k); ok && v != nil {
			c.out.set(k, scalar(v))
		}
	}
	// Sections in node1.yml's order; empty ones are left out.
	for _, k := range []string{"etcd", "restapi", "ctl", "postgresql", "pooler", "bootstrap", "tags", "watchdog", "log"} {
		c.out.sub(k)
	}
	c.etcd(root)
	restapi, _ := pop(root, "restapi")
	ctl, _ := pop(root, "ctl")
	c.restapi(section(c, "restapi", restapi))
	c.ctl(section(c, "ctl", ctl))
	pg, _ := pop(root, "postgresql")
	boot, _ := pop(root, "bootstrap")
	c.postgresql(section(c, "postgresql", pg))
	pooler := c.out.sub("pooler")
	pooler.set("enabled", false)
	c.out.comment["pooler"] = "pgha's pooler is off so that it cannot clash with a PgBouncer still on 6432;\n" +
		"turn it on (enabled: true, listen: 127.0.0.1:6432) when PgBouncer is retired."
	c.bootstrap(section(c, "bootstrap", boot))
	tags, _ := pop(root, "tags")
	c.tags(section(c, "tags", tags))
	wd, _ := pop(root, "watchdog")
	c.watchdog(section(c, "watchdog", wd))
	lg, _ := pop(root, "log")
	c.log(section(c, "log", lg))
	for _, k := range sortedKeys(root) {
		c.note(k, "%s", reasonFor(k))
	}
}

// section reads a mapping section; a non-mapping value is a note.
func section(c *conv, path string, v any) map[string]any {
	if v == nil {
		return map[string]any{}
	}
	m, ok := asMap(v)
	if !ok {
		c.note(path, "want a mapping, got %q: left out", scalar(v))
		return map[string]any{}
	}
	return m
}

// leftovers notes every key still in m under path.
func (c *conv) leftovers(path string, m map[string]any) {
	for _, k := range sortedKeys(m) {
		c.note(path+"."+k, "%s", reasonFor(path+"."+k))
	}
}

// etcd converts the etcd3 section (or Patroni's etcd v2 one, with a
// warning) into etcd.endpoints and its TLS and auth keys.
func (c *conv) etcd(root map[string]any) {
	v3, has3 := pop(root, "etcd3")
	v2, has2 := pop(root, "etcd")
	sec, path := v3, "etcd3"
	switch {
	case has3 && has2:
		c.note("etcd", "both etcd (v2) and etcd3 are set: used etcd3")
	case has2:
		sec, path = v2, "etcd"
		c.note("etcd", "Patroni's etcd section talks to etcd through the v2 API; pgha speaks the v3 API only: "+
			"its hosts went to etcd.endpoints (the servers must serve v3, as etcd 3.4 and later do), "+
			"but keys Patroni wrote through v2 are invisible to pgha: switch Patroni to an etcd3 section first "+
			"if Patroni and pgha nodes must share the cluster during a migration; tools that read the leader key through "+
			"the v2 API (vip-manager 1.x) need etcd.v2_leader_key: true on every pgha node and etcd started with --enable-v2")
	case !has3:
		c.out.sub("etcd").set("endpoints", []string{"127.0.0.1:2379"})
		for _, dcs := range []string{"kubernetes", "consul", "zookeeper", "raft", "exhibitor"} {
			if _, ok := root[dcs]; ok {
				return // the DCS section's own note says it
			}
		}
		c.note("etcd3", "missing: no DCS section; wrote etcd.endpoints [127.0.0.1:2379]: point it at your etcd cluster")
		return
	}
	m := section(c, path, sec)
	e := c.out.sub("etcd")
	protocol := "http"
	if p, ok := pop(m, "protocol"); ok {
		protocol = strings.ToLower(scalar(p))
	}
	var hosts []string
	if u, ok := pop(m, "url"); ok {
		hosts = append(hosts, stringList(u)...)
	}
	if h, ok := pop(m, "hosts"); ok {
		hosts = append(hosts, stringList(h)...)
	}
	if h, ok := pop(m, "host"); ok {
		hosts = append(hosts, stringList(h)...)
	}
	port := ""
	if p, ok := pop(m, "port"); ok {
		port = scalar(p)
	}
	var endpoints []string
	for _, h := range hosts {
		endpoints = append(endpoints, etcdEndpoint(h, protocol, port))
	}
	for _, k := range []string{"srv", "srv_suffix", "discovery_srv", "srv_domain"} {
		if _, ok := pop(m, k); ok {
			c.note(path+"."+k, "DNS SRV discovery is not supported: list the etcd members in etcd.endpoints")
		}
	}
	if len(endpoints) == 0 {
		endpoints = []string{"127.0.0.1:2379"}
		c.note(path, "names no host: wrote etcd.endpoints [127.0.0.1:2379]")
	}
	e.set("endpoints", endpoints)
	for _, k := range []string{"username", "password", "cacert", "cert", "key"} {
		if v, ok := pop(m, k); ok && v != nil {
			e.set(k, scalar(v))
		}
	}
	c.leftovers(path, m)
}

// etcdEndpoint writes one Patroni etcd host as a pgha endpoint, adding
// https:// when Patroni's protocol says so and the default port.
func etcdEndpoint(h, protocol, port string) string {
	scheme := ""
	if i := strings.Index(h, "://"); i >= 0 {
		scheme, h = h[:i+3], h[i+3:]
	} else if protocol == "https" {
		scheme = "https://"
	}
	h = strings.TrimSuffix(h, "/")
	if !hasPort(h) {
		if port == "" {
			port = "2379"
		}
		h = joinHostPort(h, port)
	}
	return scheme + h
}

// restapi converts the restapi section.
func (c *conv) restapi(m map[string]any) {
	r := c.out.sub("restapi")
	listen := "127.0.0.1:8008" // Patroni's default is 0.0.0.0:8008 only through connect_address
	if v, ok := pop(m, "listen"); ok && v != nil {
		listen = c.apiListen(scalar(v))
	}
	r.set("listen", listen)
	connect := ""
	if v, ok := pop(m, "connect_address"); ok && v != nil {
		connect = scalar(v)
	}
	if connect == "" {
		connect = c.connectFrom("restapi.connect_address", listen)
	}
	r.set("connect_address", connect)
	authSet := false
	if v, ok := pop(m, "authentication"); ok {
		a := section(c, "restapi.authentication", v)
		au := r.sub("authentication")
		for _, k := range []string{"username", "password"} {
			if x, ok := pop(a, k); ok && x != nil {
				au.set(k, scalar(x))
				authSet = authSet || k == "username"
			}
		}
		c.leftovers("restapi.authentication", a)
	}
	for _, k := range []string{"certfile", "keyfile", "cafile", "verify_client"} {
		if v, ok := pop(m, k); ok && v != nil {
			r.set(k, scalar(v))
		}
	}
	vc, _ := r.get("verify_client")
	_, cert := r.get("certfile")
	checksCerts := cert && (vc == "optional" || vc == "required")
	if !authSet && !checksCerts && !loopbackListen(listen) {
		r.set("allow_unauthenticated_writes", true)
		c.note("restapi.authentication", "not set while restapi.listen %s accepts other machines: wrote "+
			"restapi.allow_unauthenticated_writes: true to keep Patroni's open writes; set restapi.authentication "+
			"(username and password) instead, or listen on 127.0.0.1", listen)
	}
	c.leftovers("restapi", m)
}

// ctl converts the ctl section. Patroni's ctl.authentication is what
// patronictl sends; pghactl sends restapi.authentication.
func (c *conv) ctl(m map[string]any) {
	out := c.out.sub("ctl")
	for _, k := range []string{"cacert", "certfile", "keyfile"} {
		if v, ok := pop(m, k); ok && v != nil {
			out.set(k, scalar(v))
		}
	}
	if v, ok := pop(m, "insecure"); ok && v != nil {
		out.set("insecure", truthy(v))
	}
	if v, ok := pop(m, "authentication"); ok {
		a := section(c, "ctl.authentication", v)
		ra := c.out.sub("restapi").sub("authentication")
		ru, _ := ra.get("username")
		if u := scalar(a["username"]); u != "" && u != ru {
			c.note("ctl.authentication", "pghactl sends restapi.authentication; the ctl credentials (user %q) differ from it and were left out", u)
		}
	}
	c.leftovers("ctl", m)
}

// tags converts the tags: Patroni's own with their types (its false
// booleans are left out, as Patroni leaves them out of the member key),
// every other tag as written.
func (c *conv) tags(m map[string]any) {
	t := c.out.sub("tags")
	for _, k := range []string{"nofailover", "noloadbalance", "clonefrom", "nosync", "nostream"} {
		if v, ok := pop(m, k); ok && v != nil && truthy(v) {
			t.set(k, true)
		}
	}
	if v, ok := pop(m, "failover_priority"); ok && v != nil {
		if n, ok := intValue(v); ok && n >= 0 {
			t.set("failover_priority", n)
		} else {
			c.note("tags.failover_priority", "%q is not an integer of 0 or more: left out", scalar(v))
		}
	}
	if v, ok := pop(m, "replicatefrom"); ok && v != nil {
		if !isScalar(v) {
			c.note("tags.replicatefrom", "want a member name: left out")
		} else if scalar(v) != "" {
			t.set("replicatefrom", scalar(v))
		}
	}
	for _, k := range sortedKeys(m) {
		v, _ := pop(m, k)
		if _, err := json.Marshal(v); err != nil {
			c.note("tags."+k, "its value cannot be published as JSON in the member key: left out")
			continue
		}
		t.set(k, v)
		if k == "sync_priority" {
			c.note("tags.sync_priority", "carried as written (published in the member key), but pgha does not rank "+
				"synchronous standbys by it: it picks the replicas furthest ahead (nosync keeps a node out)")
		}
	}
}

// watchdog converts Patroni's watchdog section: same keys in pgha.
func (c *conv) watchdog(m map[string]any) {
	w := c.out.sub("watchdog")
	if v, ok := pop(m, "mode"); ok && v != nil {
		mode := strings.ToLower(scalar(v))
		switch v {
		case false:
			mode = "off"
		case true:
			mode = "automatic"
		}
		w.set("mode", mode)
	}
	if v, ok := pop(m, "device"); ok && v != nil {
		w.set("device", scalar(v))
	}
	if v, ok := pop(m, "safety_margin"); ok && v != nil {
		if scalar(v) == "-1" {
			c.note("watchdog.safety_margin", "-1 (ttl/2) has no pgha form: kept pgha's default 5s")
		} else if d, ok := c.duration("watchdog.safety_margin", v); ok {
			w.set("safety_margin", d)
		}
	}
	c.leftovers("watchdog", m)
}

// log converts level and type; pgha logs to stderr only.
func (c *conv) log(m map[string]any) {
	l := c.out.sub("log")
	if v, ok := pop(m, "level"); ok && v != nil {
		switch lv := strings.ToLower(scalar(v)); lv {
		case "debug", "info", "error":
			l.set("level", lv)
		case "warning", "warn":
			l.set("level", "warn")
		case "critical", "fatal":
			l.set("level", "error")
			c.note("log.level", "%s has no pgha level: wrote error", scalar(v))
		default:
			c.note("log.level", "%q is not a log level: left out", scalar(v))
		}
	}
	if v, ok := pop(m, "type"); ok && v != nil {
		switch strings.ToLower(scalar(v)) {
		case "json":
			l.set("format", "json")
		case "plain":
			l.set("format", "text")
		default:
			c.note("log.type", "%q is not plain or json: left out", scalar(v))
		}
	}
	c.leftovers("log", m)
}

// truthy reads Patroni's booleans: true/false, on/off, yes/no, 1/0.
func truthy(v any) bool {
	switch x := v.(type) {
	case bool:
		return x
	case int:
		return x != 0
	}
	switch strings.ToLower(strings.TrimSpace(scalar(v))) {
	case "true", "on", "yes", "1", "y", "t":
		return true
	}
	return false
}
