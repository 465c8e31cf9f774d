package main

import (
	"context"
	"fmt"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/pgha/pgha/cluster"
)

func reloadCommand() *cli.Command {
	return &cli.Command{
		Name:      "reload",
		Usage:     "make members re-read their configuration file",
		ArgsUsage: "[MEMBER...]",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "role", Aliases: []string{"r"}, Usage: "only members with this role: leader, replica or any", Value: "any"},
			&cli.BoolFlag{Name: "force", Usage: "do not ask for confirmation"},
		},
		Action: withCtl(func(ctx context.Context, x *ctl, c *cli.Context) error {
			args, err := positional(c)
			if err != nil {
				return err
			}
			v, err := x.view(ctx)
			if err != nil {
				return err
			}
			ms, err := selectMembers(v, args, c.String("role"))
			if err != nil {
				return err
			}
			if !c.Bool("force") {
				if err := x.confirm("Are you sure you want to reload members " + names(ms) + "?"); err != nil {
					return fmt.Errorf("reload aborted: %w", err)
				}
			}
			return postToMembers(ctx, x, ms, "reload", "", 10*time.Second, func(m cluster.Member, _ string) string {
				return fmt.Sprintf("Reload request received for member %s and will be processed within %s", m.Name, v.Config.LoopWait.D())
			})
		}),
	}
}
