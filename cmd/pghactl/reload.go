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
		ArgsUsage: "[CLUSTER] [MEMBER...]",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "role", Aliases: []string{"r"}, Usage: "only members with this role: leader, replica or any", Value: "any"},
			&cli.BoolFlag{Name: "force", Usage: "do not ask for confirmation"},
		},
		Action: withArgs(clusterMembers, func(ctx context.Context, x *ctl, c *cli.Context) error {
			v, ms, err := pickMembers(ctx, x, c, "reload", false)
			if err != nil {
				return err
			}
			return postToMembers(ctx, x, ms, "reload", "", 10*time.Second, func(m cluster.Member, _ string) string {
				return fmt.Sprintf("Reload request received for member %s and will be processed within %s", m.Name, v.Config.LoopWait.D())
			})
		}),
	}
}
