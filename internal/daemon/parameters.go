package daemon

import (
	"context"
	"errors"
	"log/slog"
	"reflect"
	"slices"
	"time"

	"github.com/pgha/pgha/cluster"
	"github.com/pgha/pgha/replication"
)

// followParameters applies postgresql.parameters of etcd's config key
// (pghactl edit-config, PATCH /config) to the local Postgres: it rewrites
// postgresql.pgha.conf and reloads, once per change. The node file's
// postgresql.parameters win over the cluster's. Parameters that need a
// restart show as pending_restart (/patroni, pghactl list) until
// `pghactl restart --pending` or a restart.
func (d *Daemon) followParameters(ctx context.Context) error {
	return followParameters(ctx, d.loop, d.inst, d.log)
}

// views is what followParameters reads of the HA loop.
type views interface {
	View() (cluster.View, bool)
	Changed() <-chan struct{}
}

// parameterWriter is what followParameters needs of the local Postgres.
type parameterWriter interface {
	ApplyClusterParameters(ctx context.Context, params map[string]any) (map[string]any, error)
}

// followParameters hands the parameters of each view it sees to inst
// itself and has them written and reloaded: the HA loop passes its own
// read of etcd to the instance (OnView) before it acts, but publishes a
// later read, so a view's parameters may not have reached the instance
// yet. Each write is checked by the instance (settings Postgres rejects
// are dropped with a warning). applied is what the instance reports it
// wrote, so a view is applied again until the files hold its
// parameters.
func followParameters(ctx context.Context, vs views, inst parameterWriter, log *slog.Logger) error {
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	var applied map[string]any
	done := false
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		case <-vs.Changed():
		}
		v, ok := vs.View()
		if !ok {
			continue
		}
		want := v.Config.PostgreSQL.Parameters
		if done && sameParameters(want, applied) {
			continue
		}
		wrote, err := inst.ApplyClusterParameters(ctx, want)
		if errors.Is(err, replication.ErrNotRunning) {
			continue // Start writes them
		}
		if err != nil {
			log.Warn("cannot apply the cluster's postgresql.parameters; retrying", "err", err)
			continue
		}
		if done {
			log.Info("applied the cluster's postgresql.parameters (reloaded)", "changed", changedKeys(applied, wrote))
		}
		applied, done = wrote, true
	}
}

// sameParameters: a and b hold the same settings (nil and empty alike).
func sameParameters(a, b map[string]any) bool {
	return len(a) == 0 && len(b) == 0 || reflect.DeepEqual(a, b)
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
