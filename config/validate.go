package config

import (
	"fmt"
	"net"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// RequiredBinaries are the Postgres programs pgha runs from bin_dir.
var RequiredBinaries = []string{"postgres", "pg_ctl", "initdb", "pg_basebackup", "pg_rewind", "pg_controldata"}

// fillDerived fills values that default from other keys.
func (c *Config) fillDerived() {
	if !strings.HasPrefix(c.Namespace, "/") {
		c.Namespace = "/" + c.Namespace
	}
	if !strings.HasSuffix(c.Namespace, "/") {
		c.Namespace += "/"
	}
	if c.RESTAPI.ConnectAddress == "" {
		c.RESTAPI.ConnectAddress = c.RESTAPI.Listen
	}
	if c.PostgreSQL.ConnectAddress == "" {
		c.PostgreSQL.ConnectAddress = c.PostgreSQL.Listen
	}
	if c.Etcd.Embedded && c.Etcd.DataDir == "" && c.PostgreSQL.DataDir != "" {
		c.Etcd.DataDir = DefaultEtcdDataDir(c.PostgreSQL.DataDir, c.Name)
	}
}

// Validate checks every key and returns Problems naming each bad one. It
// also checks the machine: bin_dir must hold the Postgres programs and
// os_user must exist.
func (c *Config) Validate() error {
	var p problems
	if c.Scope == "" {
		p.add("scope", "missing: name the cluster (every node of one cluster has the same scope)")
	}
	if c.Name == "" {
		p.add("name", "missing: name this node, unique in the cluster")
	} else if strings.ContainsAny(c.Name, "/ \t\n") {
		p.add("name", "%q must not contain slashes or spaces", c.Name)
	}
	if c.Namespace == "" || strings.Contains(strings.Trim(c.Namespace, "/"), "//") {
		p.add("namespace", "%q is not a key prefix such as /service/", c.Namespace)
	}
	c.validateEtcd(&p)
	checkHostPort(&p, "restapi.listen", c.RESTAPI.Listen, true)
	checkHostPort(&p, "restapi.connect_address", c.RESTAPI.ConnectAddress, false)
	if (c.RESTAPI.CertFile == "") != (c.RESTAPI.KeyFile == "") {
		p.add("restapi.certfile", "certfile and keyfile must be set together")
	}
	if c.RESTAPI.Authentication.Username != "" && c.RESTAPI.Authentication.Password == "" {
		p.add("restapi.authentication.password", "missing: a username without a password would lock out every unsafe request")
	}
	c.validateRESTAPI(&p)
	c.validatePostgres(&p)
	validateDynamic(&p, "bootstrap.dcs", c.Bootstrap.DCS)
	if c.Tags.FailoverPriority != nil && *c.Tags.FailoverPriority < 0 {
		p.add("tags.failover_priority", "%d is negative: use 0 (never promote) or more", *c.Tags.FailoverPriority)
	}
	switch c.Log.Level {
	case "debug", "info", "warn", "error":
	default:
		p.add("log.level", "%q is not one of debug, info, warn, error", c.Log.Level)
	}
	switch c.Log.Format {
	case "text", "json":
	default:
		p.add("log.format", "%q is not text or json", c.Log.Format)
	}
	c.Pooler.validate(&p, "pooler")
	c.Watchdog.validate(&p, c.Bootstrap.DCS.TTL.D())
	return p.err()
}

func (c *Config) validateEtcd(p *problems) {
	if len(c.Etcd.Endpoints) == 0 {
		p.add("etcd.endpoints", "missing: list etcd client URLs (http://host:2379), or set etcd.embedded: true")
	}
	for i, e := range c.Etcd.Endpoints {
		hp := strings.TrimPrefix(strings.TrimPrefix(e, "http://"), "https://")
		checkHostPort(p, fmt.Sprintf("etcd.endpoints[%d]", i), hp, false)
	}
	if c.Etcd.Embedded && c.Etcd.DataDir == "" {
		p.add("etcd.data_dir", "missing: an embedded etcd needs a data directory")
	}
	if (c.Etcd.Cert == "") != (c.Etcd.Key == "") {
		p.add("etcd.cert", "cert and key must be set together")
	}
	if c.Etcd.TLS() {
		if c.Etcd.Embedded {
			p.add("etcd.embedded", "the embedded etcd serves plain HTTP on loopback: remove etcd.cacert/cert/key, or run etcd on its own")
		}
		for i, e := range c.Etcd.Endpoints {
			if strings.HasPrefix(e, "http://") {
				p.add(fmt.Sprintf("etcd.endpoints[%d]", i), "%q is plain HTTP but etcd.cacert/cert is set: write https:// (or leave the scheme out)", e)
			}
		}
	}
	if c.Etcd.DialTimeout.D() <= 0 {
		p.add("etcd.dial_timeout", "must be positive")
	}
	if c.Etcd.V2LeaderKey && c.Etcd.Embedded {
		p.add("etcd.v2_leader_key", "the embedded etcd does not serve the v2 API: run etcd on its own with --enable-v2")
	}
}

func (c *Config) validatePostgres(p *problems) {
	pg := c.PostgreSQL
	checkHostPort(p, "postgresql.listen", pg.Listen, true)
	checkHostPort(p, "postgresql.connect_address", pg.ConnectAddress, false)
	if pg.DataDir == "" {
		p.add("postgresql.data_dir", "missing: where this node's Postgres data directory lives (e.g. /var/lib/pgha/data)")
	} else if !filepath.IsAbs(pg.DataDir) {
		p.add("postgresql.data_dir", "%q must be an absolute path", pg.DataDir)
	}
	if err := CheckBinDir(pg.BinDir); err != nil {
		p.add("postgresql.bin_dir", "%v", err)
	}
	if pg.OSUser == "" {
		p.add("postgresql.os_user", "missing: Postgres refuses to run as root; name the OS user that owns the data (usually postgres)")
	} else if _, err := user.Lookup(pg.OSUser); err != nil {
		p.add("postgresql.os_user", "OS user %q does not exist: create it (useradd --system %s) or name another", pg.OSUser, pg.OSUser)
	}
	for _, role := range []struct {
		key string
		c   Credentials
	}{{"superuser", pg.Authentication.Superuser}, {"replication", pg.Authentication.Replication}, {"rewind", pg.Authentication.Rewind}} {
		if role.c.Username == "" {
			p.add("postgresql.authentication."+role.key+".username", "missing")
		}
	}
	checkParameters(p, "postgresql.parameters", pg.Parameters)
	if pg.PgCtlTimeout.D() < time.Second {
		p.add("postgresql.pg_ctl_timeout", "%s is too short: use at least 1s", pg.PgCtlTimeout.D())
	}
}

// CheckBinDir reports whether dir holds the Postgres programs pgha runs,
// naming the Debian package to install when it does not.
func CheckBinDir(dir string) error {
	if dir == "" {
		return fmt.Errorf("missing: the directory holding pg_ctl and postgres (Debian: %s)", DefaultBinDir)
	}
	var missing []string
	for _, b := range RequiredBinaries {
		if st, err := os.Stat(filepath.Join(dir, b)); err != nil || st.IsDir() || st.Mode()&0o111 == 0 {
			missing = append(missing, b)
		}
	}
	if len(missing) > 0 {
		return fmt.Errorf("%s lacks the Postgres programs %s: install them (apt-get install postgresql-15) or point bin_dir at them",
			dir, strings.Join(missing, ", "))
	}
	return nil
}

func checkHostPort(p *problems, path, v string, listen bool) {
	if v == "" {
		p.add(path, "missing: write host:port")
		return
	}
	host, port, err := net.SplitHostPort(v)
	if err != nil {
		p.add(path, "%q is not host:port (%v)", v, err)
		return
	}
	n, err := strconv.Atoi(port)
	if err != nil || n < 1 || n > 65535 {
		p.add(path, "port %q out of range: use 1-65535", port)
	}
	if !listen && (host == "" || host == "0.0.0.0" || host == "::") {
		p.add(path, "%q is not an address other nodes can reach: name the host", v)
	}
}
