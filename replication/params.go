package replication

import (
	"context"
	"fmt"
	"maps"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/pgha/pgha/config"
)

// parameters returns every server parameter pgha sets; follow, when
// non-nil, adds primary_conninfo (and primary_slot_name). in.confMu held.
// Names are lower case, as Postgres folds them.
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
	// (as in Patroni).
	maps.Copy(p, in.cluster)
	maps.Copy(p, in.local)
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
	delete(p, "primary_conninfo")
	delete(p, "primary_slot_name")
	if follow != nil && follow.Host != "" {
		p["primary_conninfo"] = in.conninfo(*follow)
		if follow.Slot != "" {
			p["primary_slot_name"] = follow.Slot
		}
	}
	return p
}

// localParameters checks the node file's postgresql.parameters
// (config.CheckParameter) and returns them with their names in lower
// case and their values as written.
func localParameters(params map[string]any) (map[string]string, error) {
	out := make(map[string]string, len(params))
	names := slices.Sorted(maps.Keys(params))
	for _, k := range names {
		v := params[k]
		if err := config.CheckParameter(k, v); err != nil {
			return nil, fmt.Errorf("replication: postgresql.parameters: %w", err)
		}
		if v == nil {
			continue
		}
		low := strings.ToLower(k)
		if _, dup := out[low]; dup {
			return nil, fmt.Errorf("replication: postgresql.parameters: %s is set twice (Postgres ignores case): keep one", k)
		}
		out[low] = config.ParameterString(v)
	}
	return out, nil
}

// clusterWide are the parameters whose cluster value (etcd's config key)
// overrides the node file's (Patroni's list).
var clusterWide = []string{"max_connections", "max_locks_per_transaction", "max_worker_processes",
	"max_prepared_transactions", "wal_level", "track_commit_timestamp", "max_wal_senders", "max_replication_slots"}

// managedParams are set by pgha itself; etcd's parameters cannot set them.
var managedParams = map[string]bool{"listen_addresses": true, "port": true, "primary_conninfo": true,
	"primary_slot_name": true, "unix_socket_directories": true, "synchronous_standby_names": true}

// SetClusterParameters sets the cluster-wide parameters (etcd's config
// key, postgresql.parameters) that the next configuration write uses;
// names are folded to lower case, as Postgres does. The node file's
// postgresql.parameters take precedence, and the settings pgha manages
// (listen_addresses, port, primary_conninfo, ...) are ignored, as are
// settings that cannot be written (config.CheckParameter, logged once)
// and values Postgres already rejected (checkClusterParams).
func (in *Instance) SetClusterParameters(params map[string]any) {
	next := make(map[string]string, len(params))
	in.confMu.Lock()
	defer in.confMu.Unlock()
	in.clusterSrc = maps.Clone(params)
	for _, k := range slices.Sorted(maps.Keys(params)) {
		v := params[k]
		name, s := strings.ToLower(k), config.ParameterString(v)
		if v == nil || managedParams[name] {
			continue
		}
		if rv, bad := in.rejected[name]; bad && rv == s {
			continue
		}
		if err := config.CheckParameter(k, v); err != nil {
			in.reject(name, s)
			in.log.Warn("ignoring a cluster parameter that cannot be written to postgresql.conf; correct it with pghactl edit-config", "parameter", strconv.Quote(k), "err", err)
			continue
		}
		if _, dup := next[name]; dup {
			continue // the same setting in another case: the first name in order wins
		}
		next[name] = s
	}
	in.cluster = next
}

// reject remembers that the cluster's value v of name is refused, until
// the value changes. in.confMu held.
func (in *Instance) reject(name, v string) {
	if in.rejected == nil {
		in.rejected = map[string]string{}
	}
	in.rejected[name] = v
}

// ApplyClusterParameters makes params (etcd's postgresql.parameters) the
// cluster's settings (SetClusterParameters) and, when Postgres runs,
// writes them (each write is checked, checkClusterParams) and reloads. It
// returns the cluster parameters the files now hold: params, unless a
// concurrent SetClusterParameters came in between. ErrNotRunning: Postgres
// is not running, and Start writes them.
func (in *Instance) ApplyClusterParameters(ctx context.Context, params map[string]any) (map[string]any, error) {
	in.SetClusterParameters(params)
	if !in.IsRunning() {
		return nil, ErrNotRunning
	}
	if err := in.writeConfigKeep(in.cfg.DataDir, nil, true); err != nil {
		return nil, err
	}
	in.confMu.Lock()
	wrote := in.written
	in.confMu.Unlock()
	if err := in.Reload(ctx); err != nil {
		return nil, err
	}
	return wrote, nil
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

// Postgres names the setting it refuses in `postgres -C` output: an
// invalid value, a value out of range, a wrong type, an unknown name
// (`parameter "x" requires a Boolean value`, `invalid value for
// parameter "x": "y"`, ...), or the line of a syntax error.
var (
	blamedParamRE = regexp.MustCompile(`parameter "([^"]+)"`)
	syntaxErrorRE = regexp.MustCompile(`syntax error in file "([^"]+)" line (\d+)`)
)

// blamed returns the settings postgres -C output (out) refuses, in
// lower case; a syntax error in dir's postgresql.pgha.conf names the
// setting on that line.
func blamed(out, dir string) []string {
	var names []string
	for _, m := range blamedParamRE.FindAllStringSubmatch(out, -1) {
		names = append(names, strings.ToLower(m[1]))
	}
	for _, m := range syntaxErrorRE.FindAllStringSubmatch(out, -1) {
		if m[1] != dir+"/"+pghaConf {
			continue
		}
		b, err := readDataFile(m[1])
		n, _ := strconv.Atoi(m[2])
		if err != nil || n < 1 {
			continue
		}
		lines := strings.Split(string(b), "\n")
		if n <= len(lines) {
			if name, _, ok := strings.Cut(lines[n-1], " = "); ok {
				names = append(names, strings.ToLower(name))
			}
		}
	}
	return names
}

// checkClusterParams makes sure Postgres can load dir's configuration
// files after every write that carries cluster parameters (a typo in
// etcd's config key must neither turn a reload into a no-op,
// primary_conninfo included, nor keep the next start from working): it
// runs `postgres -C port`, and any failure is a rejection of the
// cluster's parameters. When the failure names cluster settings, they are
// dropped (until their value changes); when it names none, the cluster
// parameters that changed since the last configuration that loaded are
// dropped, then all of them. Each drop is a warning, and the file is
// rewritten keeping the replication lines just written. A failure that
// remains without any cluster parameter is the node's own (its file's
// parameters, the data directory): an error.
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
		in.confMu.Lock()
		if err == nil {
			in.goodCluster = maps.Clone(in.cluster)
			in.confMu.Unlock()
			return nil
		}
		dropped := in.dropBlamed(blamed(err.Error(), dir))
		msg := "ignoring cluster parameters that Postgres rejects; correct them with pghactl edit-config"
		if len(dropped) == 0 && len(in.cluster) > 0 {
			dropped = in.dropUnproven()
			msg = "ignoring cluster parameters: the configuration files do not load with them, and Postgres names no setting; correct them with pghactl edit-config"
		}
		in.confMu.Unlock()
		if len(dropped) == 0 {
			return fmt.Errorf("replication: the configuration files in %s do not load, even without the cluster's parameters: %w", dir, err)
		}
		in.log.Warn(msg, "parameters", strings.Join(dropped, ","), "error", serverErrors(err.Error()))
		if err := in.writeConfigOnce(dir, nil, true); err != nil {
			return err
		}
	}
	return fmt.Errorf("replication: the configuration files still do not load after dropping cluster parameters 20 times")
}

// dropBlamed drops the named settings that came from the cluster (and
// that the node file does not set, except the clusterWide ones, whose
// cluster value is written). in.confMu held.
func (in *Instance) dropBlamed(names []string) []string {
	var dropped []string
	for _, name := range names {
		v, fromCluster := in.cluster[name]
		_, local := in.local[name]
		if fromCluster && (!local || slices.Contains(clusterWide, name)) {
			delete(in.cluster, name)
			in.reject(name, v)
			dropped = append(dropped, name)
		}
	}
	sort.Strings(dropped)
	return slices.Compact(dropped)
}

// dropUnproven drops the cluster settings that differ from the last set
// that loaded, or all of them when there is no such difference. in.confMu
// held.
func (in *Instance) dropUnproven() []string {
	var dropped []string
	for name, v := range in.cluster {
		if g, ok := in.goodCluster[name]; !ok || g != v {
			dropped = append(dropped, name)
		}
	}
	if len(dropped) == 0 {
		dropped = slices.Collect(maps.Keys(in.cluster))
	}
	for _, name := range dropped {
		in.reject(name, in.cluster[name])
		delete(in.cluster, name)
	}
	sort.Strings(dropped)
	return dropped
}

// serverErrors picks Postgres's complaints out of postgres -C output
// (without log prefixes and notices), joined with "; ".
func serverErrors(s string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		for _, level := range []string{"LOG:", "FATAL:", "ERROR:", "DETAIL:", "HINT:"} {
			if _, msg, ok := strings.Cut(l, level); ok {
				msg = strings.TrimSpace(msg)
				if !strings.HasPrefix(msg, "skipping missing configuration file") {
					out = append(out, msg)
				}
				break
			}
		}
	}
	if len(out) == 0 {
		return strings.TrimSpace(s)
	}
	return strings.Join(out, "; ")
}
