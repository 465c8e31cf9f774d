package daemon

import (
	"context"
	"maps"
	"reflect"
	"slices"
	"time"
)

// followParameters applies postgresql.parameters of etcd's config key
// (pghactl edit-config, PATCH /config) to the local Postgres: it rewrites
// postgresql.pgha.conf and reloads, once per change. The node file's
// postgresql.parameters win over the cluster's. Parameters that need a
// restart show as pending_restart (/patroni, pghactl list) until
// `pghactl restart --pending` or a restart.
func (d *Daemon) followParameters(ctx context.Context) error {
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	var applied map[string]any
	done := false
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		case <-d.Changed():
		}
		v, ok := d.View()
		if !ok {
			continue
		}
		want := v.Config.PostgreSQL.Parameters
		if done && reflect.DeepEqual(want, applied) {
			continue
		}
		// The HA loop passed them to the instance (OnView) before it
		// published this view; this rewrites the running server's file
		// and reloads it.
		if err := d.inst.ApplyParameters(ctx); err != nil {
			d.log.Warn("cannot apply the cluster's postgresql.parameters; retrying", "err", err)
			continue
		}
		if done {
			d.log.Info("applied the cluster's postgresql.parameters (reloaded)", "changed", changedKeys(applied, want))
		}
		applied, done = maps.Clone(want), true
	}
}

// changedKeys lists the parameters that differ between a and b.
func changedKeys(a, b map[string]any) []string {
	var out []string
	for k, v := range b {
		if w, ok := a[k]; !ok || !reflect.DeepEqual(v, w) {
			out = append(out, k)
		}
	}
	for k := range a {
		if _, ok := b[k]; !ok {
			out = append(out, k)
		}
	}
	slices.Sort(out)
	return out
}
