package replication

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
)

const (
	pghaConf      = "postgresql.pgha.conf"
	includeLine   = "include_if_exists = '" + pghaConf + "'\t# added by pgha"
	standbySignal = "standby.signal"
)

// parameters returns every server parameter pgha sets; follow, when
// non-nil, adds primary_conninfo (and primary_slot_name). in.confMu held.
func (in *Instance) parameters(follow *Primary) map[string]string {
	p := map[string]string{
		"wal_level":               "replica",
		"hot_standby":             "on",
		"wal_log_hints":           "on",
		"max_wal_senders":         "10",
		"max_replication_slots":   "10",
		"wal_keep_size":           "128MB",
		"password_encryption":     "scram-sha-256",
		"unix_socket_directories": in.RunDir(),
	}
	// Cluster-wide parameters from etcd, then the node file's, which win
	// (as in Patroni). in.confMu is held.
	for k, v := range in.cluster {
		p[k] = v
	}
	for k, v := range in.cfg.Parameters {
		p[k] = paramString(v)
	}
	// Settings a hot standby needs at least as high as its primary's:
	// the cluster's value wins over the node file's, as in Patroni.
	for _, k := range clusterWide {
		if v, ok := in.cluster[k]; ok {
			p[k] = v
		}
	}
	// synchronous_mode: the leader's chosen standby (SetSyncStandby).
	if follow == nil {
		p["synchronous_standby_names"] = syncNames(in.sync)
	} else {
		p["synchronous_standby_names"] = ""
	}
	// listen decides these; a parameter cannot contradict it.
	p["listen_addresses"] = in.listen
	p["port"] = strconv.Itoa(in.port)
	if follow != nil && follow.Host != "" {
		p["primary_conninfo"] = in.conninfo(*follow)
		if follow.Slot != "" {
			p["primary_slot_name"] = follow.Slot
		}
	}
	return p
}

func paramString(v any) string {
	switch x := v.(type) {
	case bool:
		if x {
			return "on"
		}
		return "off"
	case string:
		return x
	case nil:
		return ""
	}
	return fmt.Sprint(v)
}

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
	if v, ok := in.cfg.Parameters["cluster_name"]; ok && paramString(v) != "" {
		return paramString(v)
	}
	return filepath.Base(in.cfg.DataDir)
}

func quoteConn(s string) string {
	if s != "" && !strings.ContainsAny(s, " '\\") {
		return s
	}
	return "'" + strings.NewReplacer(`\`, `\\`, `'`, `\'`).Replace(s) + "'"
}

func quoteParam(v string) string {
	return "'" + strings.ReplaceAll(v, "'", "''") + "'"
}

// clusterWide are the parameters whose cluster value (etcd's config key)
// overrides the node file's (Patroni's list).
var clusterWide = []string{"max_connections", "max_locks_per_transaction", "max_worker_processes",
	"max_prepared_transactions", "wal_level", "track_commit_timestamp", "max_wal_senders", "max_replication_slots"}

// managedParams are set by pgha itself; etcd's parameters cannot set them.
var managedParams = map[string]bool{"listen_addresses": true, "port": true, "primary_conninfo": true,
	"primary_slot_name": true, "unix_socket_directories": true, "synchronous_standby_names": true}

// syncNames is synchronous_standby_names for members: FIRST 1 of them
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
	return "FIRST 1 (" + strings.Join(q, ", ") + ")"
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

// SetClusterParameters sets the cluster-wide parameters (etcd's config
// key, postgresql.parameters) that the next configuration write uses; the
// node file's postgresql.parameters take precedence, and the settings pgha
// manages (listen_addresses, port, primary_conninfo, ...) are ignored, as
// are values Postgres already rejected (checkClusterParams).
func (in *Instance) SetClusterParameters(params map[string]any) {
	next := make(map[string]string, len(params))
	in.confMu.Lock()
	defer in.confMu.Unlock()
	for k, v := range params {
		s := paramString(v)
		if rv, bad := in.rejected[k]; managedParams[k] || (bad && rv == s) {
			continue
		}
		next[k] = s
	}
	in.cluster = next
}

// badParamRE finds the setting the server complains about in
// `postgres -C` output: an invalid value or an unknown name.
var badParamRE = regexp.MustCompile(`(?:invalid value for parameter|unrecognized configuration parameter) "([^"]+)"`)

// checkClusterParams makes sure Postgres can load dir's configuration
// files after every write (a typo in etcd's config key must neither turn
// a reload into a no-op, primary_conninfo included, nor keep the next
// start from working): it runs `postgres -C port`, and while that fails
// on a setting that came from the cluster, it drops the setting (until
// its value changes) with a warning and rewrites the file, keeping the
// replication lines just written. A failure on anything else is left to
// the server's own error.
func (in *Instance) checkClusterParams(dir string) error {
	in.confMu.Lock()
	none := len(in.cluster) == 0
	in.confMu.Unlock()
	if none {
		return nil
	}
	for range 20 {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		_, err := run(ctx, commandAs(ctx, in.user, in.bin("postgres"), "-D", dir, "-C", "port"), "check the configuration files")
		cancel()
		if err == nil {
			return nil
		}
		m := badParamRE.FindStringSubmatch(err.Error())
		if m == nil {
			return nil
		}
		name := m[1]
		in.confMu.Lock()
		v, fromCluster := in.cluster[name]
		_, local := in.cfg.Parameters[name]
		if fromCluster && (!local || slices.Contains(clusterWide, name)) {
			delete(in.cluster, name)
			if in.rejected == nil {
				in.rejected = map[string]string{}
			}
			in.rejected[name] = v
		} else {
			fromCluster = false
		}
		in.confMu.Unlock()
		if !fromCluster {
			return nil
		}
		in.log.Warn("ignoring a cluster parameter that Postgres rejects; correct it with pghactl edit-config", "parameter", name, "error", m[0])
		if err := in.writeConfigOnce(dir, nil, true); err != nil {
			return err
		}
	}
	return fmt.Errorf("replication: the configuration files still do not load after dropping 20 cluster parameters")
}

// ApplyParameters rewrites postgresql.pgha.conf with the current
// parameters, keeping the replication settings it has, and reloads a
// running Postgres. Parameters that need a restart then show as
// pending_restart in Status.
func (in *Instance) ApplyParameters(ctx context.Context) error {
	if !in.IsRunning() {
		return nil // Start writes them
	}
	if err := in.writeConfigKeep(in.cfg.DataDir, nil, true); err != nil {
		return err
	}
	return in.Reload(ctx)
}

// replicationLines returns the primary_conninfo and primary_slot_name
// lines of dir's postgresql.pgha.conf.
func (in *Instance) replicationLines(dir string) ([]string, error) {
	b, err := os.ReadFile(filepath.Join(dir, pghaConf))
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
		fmt.Fprintf(&b, "%s = %s\n", k, quoteParam(params[k]))
	}
	for _, l := range extra {
		b.WriteString(l + "\n")
	}
	if err := in.writeFile(filepath.Join(dir, pghaConf), b.Bytes(), 0o600); err != nil {
		return err
	}
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
	b, err := os.ReadFile(path)
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
	b, err := os.ReadFile(path)
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

func hbaName(s string) string {
	if strings.ContainsAny(s, " ,\"#") || s == "all" {
		return `"` + strings.ReplaceAll(s, `"`, `""`) + `"`
	}
	return s
}

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
				if err := add(k, paramString(x[k]), false); err != nil {
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
