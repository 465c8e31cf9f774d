package main

import (
	"context"
	"strconv"

	"github.com/urfave/cli/v2"
)

func historyCommand() *cli.Command {
	return &cli.Command{
		Name:  "history",
		Usage: "show the timeline switches (failovers and switchovers)",
		Flags: []cli.Flag{formatFlag()},
		Action: withCtl(func(ctx context.Context, x *ctl, c *cli.Context) error {
			v, err := x.view(ctx)
			if err != nil {
				return err
			}
			t := table{columns: []string{"TL", "LSN", "Reason", "Timestamp", "New Leader"}, right: map[string]bool{"TL": true, "LSN": true}}
			for _, h := range v.History {
				ts := ""
				if !h.Timestamp.IsZero() {
					ts = h.Timestamp.Format("2006-01-02T15:04:05.999999-07:00")
				}
				t.rows = append(t.rows, []string{strconv.FormatInt(h.Timeline, 10), strconv.FormatInt(h.LSN, 10), h.Reason, ts, h.NewLeader})
			}
			return t.print(x.out, c.String("format"))
		}),
	}
}
