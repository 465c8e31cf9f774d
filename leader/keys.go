package leader

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/pgha/pgha/cluster"
	"github.com/pgha/pgha/config"
)

// Key names under /<namespace>/<scope>/, Patroni's layout.
const (
	keyLeader     = "leader"
	keyMembers    = "members/"
	keyInitialize = "initialize"
	keyConfig     = "config"
	keyFailover   = "failover"
	keySync       = "sync"
	keyHistory    = "history"
	keyStatus     = "status"
)

// Prefix returns the etcd key prefix of a cluster: /<namespace>/<scope>/.
func Prefix(namespace, scope string) string {
	ns := "/" + strings.Trim(namespace, "/") + "/"
	if ns == "//" {
		ns = "/"
	}
	return ns + strings.Trim(scope, "/") + "/"
}

// ErrConflict is returned when a compare-and-swap lost against another
// writer (the key changed since it was read).
var ErrConflict = errors.New("leader: key changed since it was read (compare-and-swap conflict)")

// ErrNotLeader is returned by fenced writes when this member no longer
// holds the leader key with its lease.
var ErrNotLeader = errors.New("leader: not leader")

// ReadView reads every key of the cluster with one prefix Get and returns
// the snapshot. It is read-only and safe for any client (pghactl, tests).
// The config is the one stored, decoded over the defaults even when it
// does not validate (so that pghactl shows and edits what is there); the
// daemon's Store keeps its last good config instead.
func ReadView(ctx context.Context, cli *clientv3.Client, namespace, scope string) (cluster.View, error) {
	prefix := Prefix(namespace, scope)
	resp, err := cli.Get(ctx, prefix, clientv3.WithPrefix())
	if err != nil {
		return cluster.View{}, fmt.Errorf("leader: read cluster %s from etcd: %w", prefix, err)
	}
	v, _, _ := parseView(scope, prefix, resp.Header.Revision, resp.Kvs, nil)
	return v, nil
}

// parseView builds a View from the keys under prefix. It also returns the
// lease the leader key is bound to. Malformed values are skipped (a bad
// member key must not stop the loop). A config key that does not
// validate (config.ParseDynamic) is returned as the error; the view then
// holds good, or, when good is nil, the config as decoded. Without a
// config key the view holds the defaults.
func parseView(scope, prefix string, rev int64, kvs []*mvccpb.KeyValue, good *config.DynamicConfig) (cluster.View, clientv3.LeaseID, error) {
	v := cluster.View{Scope: scope, Revision: rev, Config: config.DefaultDynamic(), ReadAt: time.Now()}
	var leaderLease clientv3.LeaseID
	var cfgErr error
	for _, kv := range kvs {
		k := strings.TrimPrefix(string(kv.Key), prefix)
		switch {
		case k == keyLeader:
			v.Leader = string(kv.Value)
			v.LeaderRevision = kv.ModRevision
			leaderLease = clientv3.LeaseID(kv.Lease)
		case strings.HasPrefix(k, keyMembers):
			var m cluster.Member
			if err := json.Unmarshal(kv.Value, &m); err != nil {
				continue
			}
			m.Name = strings.TrimPrefix(k, keyMembers)
			m.Revision = kv.ModRevision
			v.Members = append(v.Members, m)
		case k == keyInitialize:
			v.Initialize = string(kv.Value)
			v.Bootstrapping = v.Initialize == ""
		case k == keyConfig:
			c, err := config.ParseDynamic(kv.Value)
			v.Config, v.ConfigRevision = c, kv.ModRevision
			if err != nil {
				cfgErr = err
				if good != nil {
					v.Config = *good
				}
			}
		case k == keyFailover:
			var f cluster.Failover
			if err := json.Unmarshal(kv.Value, &f); err == nil {
				f.Revision = kv.ModRevision
				v.Failover = &f
			}
		case k == keySync:
			var s cluster.Sync
			if err := json.Unmarshal(kv.Value, &s); err == nil {
				s.Revision = kv.ModRevision
				v.Sync = &s
			}
		case k == keyHistory:
			v.History = parseHistory(kv.Value)
		case k == keyStatus:
			_ = json.Unmarshal(kv.Value, &v.Status)
		}
	}
	return v, leaderLease, cfgErr
}

// parseHistory reads Patroni's history list:
// [[timeline, lsn, reason, timestamp, new_leader], ...].
func parseHistory(b []byte) []cluster.HistoryEntry {
	var rows [][]any
	if err := json.Unmarshal(b, &rows); err != nil {
		return nil
	}
	out := make([]cluster.HistoryEntry, 0, len(rows))
	for _, r := range rows {
		var e cluster.HistoryEntry
		if len(r) > 0 {
			if f, ok := r[0].(float64); ok {
				e.Timeline = int64(f)
			}
		}
		if len(r) > 1 {
			if f, ok := r[1].(float64); ok {
				e.LSN = int64(f)
			}
		}
		if len(r) > 2 {
			e.Reason, _ = r[2].(string)
		}
		if len(r) > 3 {
			if s, ok := r[3].(string); ok {
				e.Timestamp, _ = time.Parse(time.RFC3339Nano, s) // Patroni's isoformat parses as RFC 3339
			}
		}
		if len(r) > 4 {
			e.NewLeader, _ = r[4].(string)
		}
		out = append(out, e)
	}
	return out
}

func encodeHistory(h []cluster.HistoryEntry) []byte {
	rows := make([][]any, 0, len(h))
	for _, e := range h {
		// Python's isoformat, as Patroni writes it: microseconds, +00:00.
		rows = append(rows, []any{e.Timeline, e.LSN, e.Reason, e.Timestamp.UTC().Format("2006-01-02T15:04:05.000000+00:00"), e.NewLeader})
	}
	b, _ := json.Marshal(rows)
	return b
}

// RequestFailover writes the failover key: a switchover when f.Leader is
// set (the named leader steps down for f.Member, or for the healthiest
// replica when Member is empty), a failover when only f.Member is set.
// The leader's loop carries it out and deletes the key.
func RequestFailover(ctx context.Context, cli *clientv3.Client, namespace, scope string, f cluster.Failover) error {
	if f.Leader == "" && f.Member == "" {
		return errors.New("leader: failover request names neither a leader nor a candidate")
	}
	b, err := json.Marshal(f)
	if err != nil {
		return fmt.Errorf("leader: encode failover request: %w", err)
	}
	if _, err := cli.Put(ctx, Prefix(namespace, scope)+keyFailover, string(b)); err != nil {
		return fmt.Errorf("leader: write failover key: %w", err)
	}
	return nil
}

// CancelFailover deletes the failover key (a scheduled switchover is
// cancelled).
func CancelFailover(ctx context.Context, cli *clientv3.Client, namespace, scope string) error {
	if _, err := cli.Delete(ctx, Prefix(namespace, scope)+keyFailover); err != nil {
		return fmt.Errorf("leader: delete failover key: %w", err)
	}
	return nil
}

// CASConfig replaces the dynamic config when its mod_revision is still
// rev (0: only when the key does not exist yet). It validates the config
// first and returns ErrConflict when another writer got there first.
func CASConfig(ctx context.Context, cli *clientv3.Client, namespace, scope string, c config.DynamicConfig, rev int64) error {
	if err := c.Validate(); err != nil {
		return fmt.Errorf("leader: refuse to store config: %w", err)
	}
	key := Prefix(namespace, scope) + keyConfig
	var prev []byte
	if rev != 0 {
		// Keep what the key holds beyond pgha's fields (Patroni's
		// postgresql.pg_hba, check_timeline, ...).
		got, err := cli.Get(ctx, key)
		if err != nil {
			return fmt.Errorf("leader: read config key: %w", err)
		}
		if len(got.Kvs) == 1 && got.Kvs[0].ModRevision == rev {
			prev = got.Kvs[0].Value
		}
	}
	b, err := config.EncodeDynamic(prev, c)
	if err != nil {
		return fmt.Errorf("leader: encode config: %w", err)
	}
	resp, err := cli.Txn(ctx).If(clientv3.Compare(clientv3.ModRevision(key), "=", rev)).
		Then(clientv3.OpPut(key, string(b))).Commit()
	if err != nil {
		return fmt.Errorf("leader: write config key: %w", err)
	}
	if !resp.Succeeded {
		return ErrConflict
	}
	return nil
}

// ClearFailoverKey deletes the failover key when its mod_revision is
// still rev (ErrConflict otherwise); rev 0 deletes it unconditionally.
func ClearFailoverKey(ctx context.Context, cli *clientv3.Client, namespace, scope string, rev int64) error {
	return deleteFailover(ctx, cli, Prefix(namespace, scope)+keyFailover, rev)
}

// deleteFailover is the one deletion of the failover key: when its
// mod_revision is still rev (ErrConflict otherwise), or unconditionally
// for rev 0.
func deleteFailover(ctx context.Context, cli *clientv3.Client, key string, rev int64) error {
	if rev == 0 {
		if _, err := cli.Delete(ctx, key); err != nil {
			return fmt.Errorf("leader: delete failover key: %w", err)
		}
		return nil
	}
	resp, err := cli.Txn(ctx).If(clientv3.Compare(clientv3.ModRevision(key), "=", rev)).
		Then(clientv3.OpDelete(key)).Commit()
	if err != nil {
		return fmt.Errorf("leader: delete failover key: %w", err)
	}
	if !resp.Succeeded {
		return ErrConflict
	}
	return nil
}
