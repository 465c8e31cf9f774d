package main

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/urfave/cli/v2"
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
			var failed []string
			for _, m := range ms {
				code, resp, err := x.request(ctx, m, "POST", "/reload", "", 10*time.Second)
				switch {
				case err != nil:
					failed = append(failed, m.Name)
					fmt.Fprintf(x.out, "Failed: reload for member %s, %v\n", m.Name, err)
				case code == 200 || code == 202:
					fmt.Fprintf(x.out, "Reload request received for member %s and will be processed within %s\n", m.Name, v.Config.LoopWait.D())
				default:
					failed = append(failed, m.Name)
					fmt.Fprintf(x.out, "Failed: reload for member %s, status code=%d, (%s)\n", m.Name, code, resp)
				}
			}
			if len(failed) > 0 {
				return fmt.Errorf("reload failed on %s", strings.Join(failed, ", "))
			}
			return nil
		}),
	}
}
