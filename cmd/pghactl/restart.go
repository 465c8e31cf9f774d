package main

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/pgha/pgha/cluster"
)

func restartCommand() *cli.Command {
	return &cli.Command{
		Name:      "restart",
		Usage:     "restart Postgres on members (all when none named)",
		ArgsUsage: "[CLUSTER] [MEMBER...]",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "role", Aliases: []string{"r"}, Usage: "only members with this role: leader, primary, replica or any", Value: "any"},
			&cli.BoolFlag{Name: "pending", Usage: "only members with a pending restart"},
			&cli.BoolFlag{Name: "force", Usage: "do not ask for confirmation"},
		},
		Action: withArgs(clusterMembers, func(ctx context.Context, x *ctl, c *cli.Context) error {
			_, ms, err := pickMembers(ctx, x, c, "restart", true)
			if err != nil {
				return err
			}
			body := map[string]any{}
			if c.Bool("pending") {
				body["restart_pending"] = true
			}
			b, _ := json.Marshal(body)
			return postToMembers(ctx, x, ms, "restart", string(b), 2*time.Minute, func(m cluster.Member, _ string) string {
				return "Success: restart on member " + m.Name
			})
		}),
	}
}

// postToMembers POSTs body to /<action> on each member, printing a line
// per member (ok(m, response) on 200/202, patronictl's "Failed: ..."
// otherwise), and fails naming the members that did not succeed.
func postToMembers(ctx context.Context, x *ctl, ms []cluster.Member, action, body string, timeout time.Duration, ok func(m cluster.Member, resp string) string) error {
	var failed []string
	for _, m := range ms {
		code, resp, err := x.request(ctx, m, "POST", "/"+action, body, timeout)
		switch {
		case err != nil:
			failed = append(failed, m.Name)
			fmt.Fprintf(x.out, "Failed: %s for member %s, %v\n", action, m.Name, err)
		case code == 200 || code == 202:
			fmt.Fprintln(x.out, ok(m, resp))
		default:
			failed = append(failed, m.Name)
			fmt.Fprintf(x.out, "Failed: %s for member %s, status code=%d, (%s)\n", action, m.Name, code, resp)
		}
	}
	if len(failed) > 0 {
		return fmt.Errorf("%s failed on %s", action, strings.Join(failed, ", "))
	}
	return nil
}

// pickMembers reads the view, selects the members named on the command
// line (all when none) with --role, prints the table when show, and asks
// to confirm verb unless --force.
func pickMembers(ctx context.Context, x *ctl, c *cli.Context, verb string, show bool) (cluster.View, []cluster.Member, error) {
	args := x.args
	v, err := x.view(ctx)
	if err != nil {
		return v, nil, err
	}
	ms, err := selectMembers(v, args, c.String("role"))
	if err != nil {
		return v, nil, err
	}
	if show {
		if err := printMembers(x.out, v, "pretty", false); err != nil {
			return v, nil, err
		}
	}
	if !c.Bool("force") {
		if err := x.confirm("Are you sure you want to " + verb + " members " + names(ms) + "?"); err != nil {
			return v, nil, fmt.Errorf("%s aborted: %w", verb, err)
		}
	}
	return v, ms, nil
}

// selectMembers returns the named members (all when none named) that have
// role ("any", "leader"/"primary"/"master", "replica").
func selectMembers(v cluster.View, want []string, role string) ([]cluster.Member, error) {
	var ms []cluster.Member
	if len(want) == 0 {
		ms = append(ms, v.Members...)
	} else {
		for _, n := range want {
			m, err := member(v, n)
			if err != nil {
				return nil, err
			}
			ms = append(ms, m)
		}
	}
	var out []cluster.Member
	for _, m := range ms {
		isLeader := m.Name == v.Leader
		switch role {
		case "", "any":
		case "leader", "primary", "master":
			if !isLeader {
				continue
			}
		case "replica":
			if isLeader {
				continue
			}
		default:
			return nil, fmt.Errorf("--role %q: use leader, primary, replica or any", role)
		}
		out = append(out, m)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("no member of cluster %s matches role %s", v.Scope, role)
	}
	return out, nil
}

func names(ms []cluster.Member) string {
	s := make([]string, len(ms))
	for i, m := range ms {
		s[i] = m.Name
	}
	return strings.Join(s, ", ")
}
