package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/pgha/pgha/cluster"
	"github.com/pgha/pgha/leader"
)

func switchoverCommand() *cli.Command {
	return &cli.Command{
		Name:  "switchover",
		Usage: "hand the primary role to a replica gracefully",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "leader", Aliases: []string{"primary"}, Usage: "the current leader's `NAME`"},
			&cli.StringFlag{Name: "candidate", Usage: "the replica to promote (default: the healthiest)"},
			&cli.StringFlag{Name: "scheduled", Usage: "when, e.g. 2026-11-22T03:00+00:00, or now"},
			&cli.BoolFlag{Name: "force", Usage: "do not ask for confirmation"},
		},
		Action: withCtl(func(ctx context.Context, x *ctl, c *cli.Context) error {
			return doFailover(ctx, x, "switchover", c.String("candidate"), c.Bool("force"), c.String("leader"), c.String("scheduled"))
		}),
	}
}

func failoverCommand() *cli.Command {
	return &cli.Command{
		Name:  "failover",
		Usage: "promote a named replica (also without a healthy leader)",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "candidate", Usage: "the replica to promote"},
			&cli.BoolFlag{Name: "force", Usage: "do not ask for confirmation"},
		},
		Action: withCtl(func(ctx context.Context, x *ctl, c *cli.Context) error {
			return doFailover(ctx, x, "failover", c.String("candidate"), c.Bool("force"), "", "")
		}),
	}
}

// candidates lists members that could be promoted and, for the others, why not.
func candidates(v cluster.View) (names []string, why []string) {
	for _, m := range v.Members {
		switch {
		case m.Name == v.Leader:
		case m.Tags.NoFailover:
			why = append(why, m.Name+" is tagged nofailover")
		case !cluster.CanPromote(m.Tags):
			why = append(why, m.Name+" has failover_priority 0")
		default:
			names = append(names, m.Name)
		}
	}
	sort.Strings(names)
	return names, why
}

// parseScheduled reads --scheduled: "" or "now" is immediate.
func parseScheduled(s string) (*time.Time, error) {
	if s == "" || s == "now" {
		return nil, nil
	}
	for _, layout := range []string{time.RFC3339, "2006-01-02T15:04Z07:00", "2006-01-02T15:04:05", "2006-01-02T15:04", "2006-01-02 15:04"} {
		if t, err := time.ParseInLocation(layout, s, time.Local); err == nil {
			return &t, nil
		}
	}
	return nil, fmt.Errorf("--scheduled %q: use an ISO 8601 time such as 2026-11-22T03:00+00:00, or now", s)
}

// doFailover is patronictl's _do_failover_or_switchover: check the
// request against the view, confirm, and POST it to the leader's REST API
// (the candidate's when there is no leader); if no API answers, write the
// failover key directly.
func doFailover(ctx context.Context, x *ctl, action, candidate string, force bool, swLeader, scheduled string) error {
	v, err := x.view(ctx)
	if err != nil {
		return err
	}
	fmt.Fprintln(x.out, "Current cluster topology")
	if err := printMembers(x.out, v, "pretty", false); err != nil {
		return err
	}
	if action == "switchover" {
		if v.Leader == "" {
			return fmt.Errorf("cluster %s has no leader: use failover --candidate NAME", x.scope)
		}
		if swLeader == "" {
			if force {
				swLeader = v.Leader
			} else if swLeader, err = x.prompt("Primary", v.Leader); err != nil {
				return err
			}
		}
		if swLeader != v.Leader {
			return fmt.Errorf("member %s is not the leader of cluster %s (the leader is %s)", swLeader, x.scope, v.Leader)
		}
	}
	names, why := candidates(v)
	if len(names) == 0 {
		reason := "the cluster has no members except the leader"
		if len(why) > 0 {
			reason = strings.Join(why, "; ")
		}
		return fmt.Errorf("no candidates found to %s to: %s", action, reason)
	}
	if candidate == "" && !force {
		if candidate, err = x.prompt(fmt.Sprintf("Candidate %v", names), ""); err != nil {
			return err
		}
	}
	if action == "failover" && candidate == "" {
		return errors.New("failover could be performed only to a specific candidate: pass --candidate NAME")
	}
	if candidate != "" && !contains(names, candidate) {
		if candidate == v.Leader {
			return fmt.Errorf("member %s is already the leader of cluster %s", candidate, x.scope)
		}
		if _, err := member(v, candidate); err != nil {
			return err
		}
		return fmt.Errorf("member %s is tagged nofailover and cannot be promoted", candidate)
	}
	var at *time.Time
	if action == "switchover" {
		if scheduled == "" && !force {
			next := time.Now().Add(time.Hour).Format("2006-01-02T15:04")
			if scheduled, err = x.prompt("When should the switchover take place (e.g. "+next+" )", "now"); err != nil {
				return err
			}
		}
		if at, err = parseScheduled(scheduled); err != nil {
			return err
		}
		if at != nil && v.Paused() {
			return errors.New("can't schedule switchover in the paused state")
		}
	}
	body := map[string]any{"candidate": candidate}
	if action == "switchover" {
		body["leader"] = swLeader
	}
	if at != nil {
		body["scheduled_at"] = at.Format(time.RFC3339)
	}
	if !force {
		demote := ""
		if v.Leader != "" {
			demote = ", demoting current leader " + v.Leader
		}
		q := fmt.Sprintf("Are you sure you want to %s cluster %s%s?", action, x.scope, demote)
		if at != nil {
			q = fmt.Sprintf("Are you sure you want to schedule switchover of cluster %s at %s%s?", x.scope, at.Format(time.RFC3339), demote)
		}
		if err := x.confirm(q); err != nil {
			return fmt.Errorf("%s aborted: %w", action, err)
		}
	}
	target, ok := v.LeaderMember()
	if !ok {
		target, _ = v.Member(candidate)
	}
	b, _ := json.Marshal(body)
	code, resp, err := x.request(ctx, target, "POST", "/"+action, string(b), 35*time.Second)
	if err != nil {
		fmt.Fprintf(x.out, "%s Could not %s using the REST API (%v), falling back to etcd\n", stamp(), action, err)
		f := cluster.Failover{Leader: swLeader, Member: candidate, ScheduledAt: at}
		cli, cerr := x.client()
		if cerr != nil {
			return cerr
		}
		wctx, cancel := context.WithTimeout(ctx, etcdTimeout)
		defer cancel()
		if err := leader.RequestFailover(wctx, cli, x.namespace, x.scope, f); err != nil {
			return x.etcdError(err)
		}
	} else if code == 200 || code == 202 {
		fmt.Fprintf(x.out, "%s %s\n", stamp(), resp)
	} else {
		result := "failed"
		if strings.Contains(strings.ToLower(resp), "status unknown") {
			result = "result unknown"
		}
		return fmt.Errorf("%s %s, details: %d, %s", strings.ToUpper(action[:1])+action[1:], result, code, resp)
	}
	if v, err = x.view(ctx); err != nil {
		return err
	}
	return printMembers(x.out, v, "pretty", false)
}

func contains(xs []string, s string) bool {
	for _, x := range xs {
		if x == s {
			return true
		}
	}
	return false
}

func stamp() string { return time.Now().Format("2006-01-02 15:04:05.000000") }
