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

// pauseWaitLimit bounds --wait.
const pauseWaitLimit = 2 * time.Minute

func pauseCommand() *cli.Command {
	return &cli.Command{
		Name:  "pause",
		Usage: "maintenance mode: the HA loop starts, stops, promotes and demotes nothing on its own",
		Flags: []cli.Flag{&cli.BoolFlag{Name: "wait", Usage: "wait until every member reports the pause"}},
		Action: withCtl(func(ctx context.Context, x *ctl, c *cli.Context) error {
			return togglePause(ctx, x, true, c.Bool("wait"))
		}),
	}
}

func resumeCommand() *cli.Command {
	return &cli.Command{
		Name:  "resume",
		Usage: "leave maintenance mode",
		Flags: []cli.Flag{&cli.BoolFlag{Name: "wait", Usage: "wait until every member reports the resume"}},
		Action: withCtl(func(ctx context.Context, x *ctl, c *cli.Context) error {
			return togglePause(ctx, x, false, c.Bool("wait"))
		}),
	}
}

// apiMembers returns members with a REST API, the leader first.
func apiMembers(v cluster.View) []cluster.Member {
	var out []cluster.Member
	if l, ok := v.LeaderMember(); ok && l.APIURL != "" {
		out = append(out, l)
	}
	for _, m := range v.Members {
		if m.Name != v.Leader && m.APIURL != "" {
			out = append(out, m)
		}
	}
	return out
}

// togglePause is patronictl's toggle_pause: PATCH /config {"pause": ...}
// on the leader (or, failing that, any member).
func togglePause(ctx context.Context, x *ctl, paused, wait bool) error {
	v, err := x.view(ctx)
	if err != nil {
		return err
	}
	if v.Paused() == paused {
		if paused {
			return fmt.Errorf("cluster %s is already paused", x.scope)
		}
		return fmt.Errorf("cluster %s is not paused", x.scope)
	}
	ms := apiMembers(v)
	if len(ms) == 0 {
		return fmt.Errorf("cluster %s has no member with a REST API to ask", x.scope)
	}
	body, _ := json.Marshal(map[string]any{"pause": paused})
	var lastErr error
	done := false
	for _, m := range ms {
		code, resp, err := x.request(ctx, m, "PATCH", "/config", string(body), 10*time.Second)
		if err != nil {
			lastErr = err
			continue
		}
		if code != 200 {
			lastErr = fmt.Errorf("member %s answered %d: %s", m.Name, code, resp)
			continue
		}
		done = true
		break
	}
	if !done {
		return fmt.Errorf("could not change pause: %w", lastErr)
	}
	word := "paused"
	if !paused {
		word = "resumed"
	}
	if wait {
		verb := "pause"
		if !paused {
			verb = "resume"
		}
		fmt.Fprintf(x.out, "'%s' request sent, waiting until it is recognized by all nodes\n", verb)
		if err := waitPause(ctx, x, ms, paused); err != nil {
			return err
		}
	}
	fmt.Fprintf(x.out, "Success: cluster management is %s\n", word)
	return nil
}

// waitPause polls every member's /patroni until each reports paused.
func waitPause(ctx context.Context, x *ctl, ms []cluster.Member, paused bool) error {
	ctx, cancel := context.WithTimeout(ctx, pauseWaitLimit)
	defer cancel()
	pending := map[string]cluster.Member{}
	for _, m := range ms {
		pending[m.Name] = m
	}
	for len(pending) > 0 {
		for name, m := range pending {
			code, body, err := x.request(ctx, m, "GET", "/patroni", "", 5*time.Second)
			if err != nil || code != http.StatusOK {
				continue
			}
			var doc struct {
				Pause bool `json:"pause"`
			}
			if json.Unmarshal([]byte(body), &doc) == nil && doc.Pause == paused {
				delete(pending, name)
			}
		}
		if len(pending) == 0 {
			break
		}
		select {
		case <-ctx.Done():
			var left []cluster.Member
			for _, m := range pending {
				left = append(left, m)
			}
			return fmt.Errorf("members %s did not report the change in time: %w", names(left), ctx.Err())
		case <-time.After(500 * time.Millisecond):
		}
	}
	return nil
}
