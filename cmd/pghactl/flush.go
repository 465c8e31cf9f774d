package main

import (
	"context"
	"fmt"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/pgha/pgha/leader"
)

func flushCommand() *cli.Command {
	return &cli.Command{
		Name:      "flush",
		Usage:     "discard scheduled events: flush switchover cancels a scheduled switchover",
		ArgsUsage: "[CLUSTER] [MEMBER...] switchover|restart",
		Flags:     []cli.Flag{&cli.BoolFlag{Name: "force", Usage: "do not ask for confirmation"}},
		Action: withArgs(clusterTarget, func(ctx context.Context, x *ctl, c *cli.Context) error {
			args := x.args
			if len(args) == 0 {
				return fmt.Errorf("name what to flush: pghactl flush switchover (or restart)")
			}
			target := args[len(args)-1]
			switch target {
			case "restart":
				fmt.Fprintln(x.out, "No scheduled restarts: pgha does not schedule restarts")
				return nil
			case "switchover":
			default:
				return fmt.Errorf("cannot flush %q: use switchover or restart", target)
			}
			v, err := x.view(ctx)
			if err != nil {
				return err
			}
			if v.Failover == nil || v.Failover.ScheduledAt == nil {
				fmt.Fprintln(x.out, "No pending scheduled switchover")
				return nil
			}
			if !c.Bool("force") {
				if err := x.confirm(fmt.Sprintf("Are you sure you want to cancel the switchover scheduled at %s?", v.Failover.ScheduledAt.Format(time.RFC3339))); err != nil {
					return fmt.Errorf("flush aborted: %w", err)
				}
			}
			for _, m := range apiMembers(v) {
				code, resp, err := x.request(ctx, m, "DELETE", "/switchover", "", 10*time.Second)
				if err == nil && (code == 200 || code == 404) {
					fmt.Fprintln(x.out, "Success: "+resp)
					return nil
				}
			}
			// No REST API answered: delete the key in etcd, as patronictl does.
			cli, err := x.client()
			if err != nil {
				return err
			}
			dctx, cancel := context.WithTimeout(ctx, etcdTimeout)
			defer cancel()
			if err := leader.CancelFailover(dctx, cli, x.namespace, x.scope); err != nil {
				return x.etcdError(err)
			}
			fmt.Fprintln(x.out, "Success: scheduled switchover deleted (in etcd; no member's REST API answered)")
			return nil
		}),
	}
}
