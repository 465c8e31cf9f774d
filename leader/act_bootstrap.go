package leader

import (
	"context"
	"errors"
	"fmt"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/pgha/pgha/cluster"
)

// bootstrap races for the initialize key; the winner initialises (or
// adopts an existing data dir), takes the leader key and stores the system
// identifier.
func (l *Loop) bootstrap(ctx context.Context, s step) (Memory, error) {
	return s.mem, l.initCluster(ctx, s.f, s.lease)
}

func (l *Loop) initCluster(ctx context.Context, f Facts, lease clientv3.LeaseID) error {
	c, cancel := context.WithTimeout(ctx, 3*time.Second)
	won, err := l.store.ClaimInitialize(c, lease)
	cancel()
	if err != nil || !won {
		return err
	}
	if err := l.permit(lease, "bootstrap"); err != nil {
		c, cancel := context.WithTimeout(context.WithoutCancel(ctx), 3*time.Second)
		defer cancel()
		return errors.Join(err, l.store.CancelInitialize(c))
	}
	l.log.Info("won the initialize race: bootstrapping the cluster")
	l.state = cluster.StateInitializing
	pctx, pcancel := context.WithTimeout(ctx, 3*time.Second)
	l.publishMember(pctx, f.Local)
	pcancel()
	ranInitdb := false
	fail := func(err error) error {
		c, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
		defer cancel()
		if ranInitdb {
			// A half-bootstrapped data dir of a system that never became the
			// cluster's would later read as a foreign cluster: remove it.
			if serr := l.pg.Stop(c, true); serr != nil {
				err = errors.Join(err, serr)
			} else if werr := l.pg.Wipe(c); werr != nil {
				err = errors.Join(err, werr)
			}
		}
		if cerr := l.store.CancelInitialize(c); cerr != nil {
			err = errors.Join(err, cerr)
		}
		return fmt.Errorf("leader: bootstrap: %w", err)
	}
	if !f.Local.Initialized {
		ranInitdb = true
		if err := l.pg.Bootstrap(ctx); err != nil {
			return fail(err)
		}
	} else if err := l.pg.Start(ctx); err != nil {
		return fail(err)
	}
	c, cancel = context.WithTimeout(ctx, 3*time.Second)
	ok, err := l.store.AcquireLeader(c, lease)
	cancel()
	if err != nil || !ok {
		_ = l.pg.Stop(ctx, true)
		return fail(fmt.Errorf("take the leader key after initdb: ok=%v err=%v", ok, err))
	}
	sctx, scancel := context.WithTimeout(ctx, 5*time.Second)
	st, err := l.pg.Status(sctx)
	scancel()
	if err != nil {
		return fail(err)
	}
	if st.InRecovery {
		if err := l.pg.Promote(ctx); err != nil {
			return fail(err)
		}
	}
	c, cancel = context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	if err := l.store.CompleteInitialize(c, st.SystemID); err != nil {
		return err
	}
	l.log.Info("cluster bootstrapped", "system_identifier", st.SystemID)
	return nil
}
