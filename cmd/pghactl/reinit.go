package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/pgha/pgha/cluster"
)

// reinitWaitLimit bounds --wait.
const reinitWaitLimit = 30 * time.Minute

func reinitCommand() *cli.Command {
	return &cli.Command{
		Name:      "reinit",
		Usage:     "wipe a replica's data directory and clone it again from the leader",
		ArgsUsage: "[CLUSTER] MEMBER...",
		Flags: []cli.Flag{
			&cli.BoolFlag{Name: "force", Usage: "do not ask for confirmation, and cancel a running task on the member"},
			&cli.BoolFlag{Name: "wait", Usage: "wait until the member runs again, printing its state"},
		},
		Action: withArgs(clusterMembers, func(ctx context.Context, x *ctl, c *cli.Context) error {
			args := x.args
			if len(args) == 0 {
				return fmt.Errorf("name the member to reinitialize: pghactl reinit MEMBER")
			}
			v, err := x.view(ctx)
			if err != nil {
				return err
			}
			ms, err := selectMembers(v, args, "any")
			if err != nil {
				return err
			}
			for _, m := range ms {
				if m.Name == v.Leader {
					return fmt.Errorf("member %s is the leader: reinit only rebuilds replicas (switch over first)", m.Name)
				}
			}
			if err := printMembers(x.out, v, "pretty", false); err != nil {
				return err
			}
			force := c.Bool("force")
			if !force {
				if err := x.confirm("Are you sure you want to reinitialize members " + names(ms) + "?"); err != nil {
					return fmt.Errorf("reinit aborted: %w", err)
				}
			}
			b, _ := json.Marshal(map[string]any{"force": force})
			var started []cluster.Member
			for _, m := range ms {
				code, resp, err := x.request(ctx, m, "POST", "/reinitialize", string(b), time.Minute)
				switch {
				case err != nil:
					return fmt.Errorf("reinitialize %s: %w", m.Name, err)
				case code == 200:
					fmt.Fprintf(x.out, "Success: reinitialize for member %s\n", m.Name)
					started = append(started, m)
				default:
					return fmt.Errorf("reinitialize for member %s failed, status code=%d, (%s)", m.Name, code, resp)
				}
			}
			if !c.Bool("wait") {
				return nil
			}
			for _, m := range started {
				if err := waitRunning(ctx, x, m); err != nil {
					return err
				}
			}
			return nil
		}),
	}
}

// waitRunning polls the member's /patroni until its Postgres runs again,
// printing each state it passes through.
func waitRunning(ctx context.Context, x *ctl, m cluster.Member) error {
	fmt.Fprintf(x.out, "Waiting for reinitialize to complete on: %s\n", m.Name)
	ctx, cancel := context.WithTimeout(ctx, reinitWaitLimit)
	defer cancel()
	last := ""
	sawOther := false
	start := time.Now()
	for {
		code, body, err := x.request(ctx, m, "GET", "/patroni", "", 5*time.Second)
		state := "unreachable"
		if err == nil && code == http.StatusOK {
			var doc struct {
				State string `json:"state"`
			}
			if json.Unmarshal([]byte(body), &doc) == nil {
				state = doc.State
			}
		}
		if state != last {
			fmt.Fprintf(x.out, "%s %s: %s\n", stamp(), m.Name, state)
			last = state
		}
		if state != "running" {
			sawOther = true
		} else if sawOther || time.Since(start) > 15*time.Second {
			fmt.Fprintf(x.out, "Reinitialize is completed on: %s\n", m.Name)
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("member %s still %q after waiting: %w", m.Name, state, ctx.Err())
		case <-time.After(time.Second):
		}
	}
}
