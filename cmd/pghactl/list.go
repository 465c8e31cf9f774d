package main

import (
	"context"
	"fmt"
	"io"
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/pgha/pgha/cluster"
	"github.com/pgha/pgha/restapi"
)

func formatFlag() cli.Flag {
	return &cli.StringFlag{Name: "format", Aliases: []string{"f"}, Value: "pretty", Usage: "output format: pretty, tsv, json or yaml"}
}

func watchFlags() []cli.Flag {
	return []cli.Flag{
		&cli.BoolFlag{Name: "W", Usage: "refresh every 2 seconds until Ctrl-C"},
		&cli.DurationFlag{Name: "watch", Aliases: []string{"w"}, Usage: "refresh every `INTERVAL` until Ctrl-C"},
	}
}

func listCommand() *cli.Command {
	return &cli.Command{
		Name:   "list",
		Usage:  "list the members of the cluster (Member, Host, Role, State, TL, Lag in MB)",
		Flags:  append([]cli.Flag{formatFlag()}, watchFlags()...),
		Action: withCtl(func(ctx context.Context, x *ctl, c *cli.Context) error { return watch(ctx, x, c, c.String("format")) }),
	}
}

func topologyCommand() *cli.Command {
	return &cli.Command{
		Name:   "topology",
		Usage:  "show the replication tree: the leader, then its replicas",
		Flags:  watchFlags(),
		Action: withCtl(func(ctx context.Context, x *ctl, c *cli.Context) error { return watch(ctx, x, c, "topology") }),
	}
}

// watch prints the member table once, or every interval with -W/-w until
// ctx ends.
func watch(ctx context.Context, x *ctl, c *cli.Context, format string) error {
	interval := c.Duration("watch")
	if c.Bool("W") && interval == 0 {
		interval = 2 * time.Second
	}
	for {
		v, err := x.view(ctx)
		if err != nil {
			return err
		}
		if interval > 0 {
			fmt.Fprint(x.out, "\033[H\033[2J")
			fmt.Fprintln(x.out, time.Now().Format("2006-01-02 15:04:05"))
		}
		if err := printMembers(x.out, v, format); err != nil {
			return err
		}
		if interval <= 0 {
			return nil
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(interval):
		}
	}
}

// memberTable builds patronictl's member table for a view.
func memberTable(v cluster.View, format string) table {
	doc := restapi.NewClusterDoc(v)
	members := doc.Members
	if format == "topology" {
		members = topologyOrder(members)
	}
	appendPort := false
	hosts := map[string]bool{}
	for _, m := range members {
		if m.Port != 0 && m.Port != 5432 {
			appendPort = true
		}
		hosts[m.Host] = true
	}
	if len(hosts) < len(members) {
		appendPort = true
	}
	pending := false
	for _, m := range members {
		pending = pending || m.PendingRestart
	}
	cols := []string{"Cluster", "Member", "Host", "Role", "State", "TL", "Lag in MB"}
	if pending {
		cols = append(cols, "Pending restart")
	}
	t := table{columns: cols, right: map[string]bool{"TL": true, "Lag in MB": true}}
	for _, m := range members {
		host := m.Host
		if appendPort && host != "" && m.Port != 0 {
			host += ":" + strconv.Itoa(m.Port)
		}
		tl := ""
		if m.Timeline > 0 {
			tl = strconv.FormatInt(m.Timeline, 10)
		}
		row := []string{v.Scope, m.Name, host, roleTitle(m.Role), m.State, tl, lagMB(m.Lag)}
		if pending {
			p := ""
			if m.PendingRestart {
				p = "*"
			}
			row = append(row, p)
		}
		t.rows = append(t.rows, row)
	}
	if format == "pretty" || format == "topology" || format == "" {
		// The cluster goes in the title, not in a column.
		t.columns = t.columns[1:]
		for i := range t.rows {
			t.rows[i] = t.rows[i][1:]
		}
		init := v.Initialize
		if init == "" {
			init = "uninitialized"
		}
		t.title = fmt.Sprintf(" Cluster: %s (%s) ", v.Scope, init)
	}
	return t
}

// roleTitle is patronictl's role.replace('_', ' ').title().
func roleTitle(r string) string {
	words := strings.Fields(strings.ReplaceAll(r, "_", " "))
	for i, w := range words {
		words[i] = strings.ToUpper(w[:1]) + w[1:]
	}
	return strings.Join(words, " ")
}

// lagMB renders a lag in whole MiB (rounded), "" for the leader, and
// "unknown" when the member published no position.
func lagMB(lag any) string {
	switch l := lag.(type) {
	case nil:
		return ""
	case int64:
		return strconv.FormatInt(int64(math.Round(float64(l)/(1<<20))), 10)
	case float64:
		return strconv.FormatInt(int64(math.Round(l/(1<<20))), 10)
	case string:
		return l
	}
	return fmt.Sprint(lag)
}

// topologyOrder puts the leader first and indents its replicas.
func topologyOrder(ms []restapi.MemberDoc) []restapi.MemberDoc {
	var out, rest []restapi.MemberDoc
	for _, m := range ms {
		if strings.HasSuffix(m.Role, "leader") {
			out = append(out, m)
		} else {
			rest = append(rest, m)
		}
	}
	indent := len(out) > 0
	for _, m := range rest {
		if indent {
			m.Name = "+ " + m.Name
		}
		out = append(out, m)
	}
	return out
}

// printMembers prints the member table and, in pretty formats, the
// service info (maintenance mode, scheduled switchover).
func printMembers(w io.Writer, v cluster.View, format string) error {
	if err := memberTable(v, format).print(w, format); err != nil {
		return err
	}
	if format != "pretty" && format != "topology" && format != "" {
		return nil
	}
	doc := restapi.NewClusterDoc(v)
	var info []string
	if doc.Pause {
		info = append(info, "Maintenance mode: on")
	}
	if s := doc.ScheduledSwitchover; s != nil {
		line := "Switchover scheduled at: " + s.At
		if s.From != "" {
			line += fmt.Sprintf("\n%24s: %s", "from", s.From)
		}
		if s.To != "" {
			line += fmt.Sprintf("\n%24s: %s", "to", s.To)
		}
		info = append(info, line)
	}
	if len(info) > 0 {
		fmt.Fprintln(w, " "+strings.Join(info, "\n "))
	}
	return nil
}
