package main

import (
	"context"
	"fmt"
	"io"
	"math"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/urfave/cli/v2"
	"gopkg.in/yaml.v3"

	"github.com/pgha/pgha/cluster"
	"github.com/pgha/pgha/config"
	"github.com/pgha/pgha/restapi"
)

func formatFlag() cli.Flag {
	return &cli.StringFlag{Name: "format", Aliases: []string{"f"}, Value: "pretty", Usage: "output format: pretty, tsv, json or yaml"}
}

func watchFlags() []cli.Flag {
	return []cli.Flag{
		&cli.BoolFlag{Name: "W", Usage: "refresh every 2 seconds until Ctrl-C"},
		&cli.StringFlag{Name: "watch", Aliases: []string{"w"}, Usage: "refresh every `SECONDS` (or a duration such as 500ms) until Ctrl-C"},
	}
}

func listFlags() []cli.Flag {
	return append([]cli.Flag{
		formatFlag(),
		&cli.BoolFlag{Name: "extended", Aliases: []string{"e"}, Usage: "show the Pending restart, Pending restart reason, Scheduled restart and Tags columns"},
		&cli.BoolFlag{Name: "timestamp", Aliases: []string{"t"}, Usage: "print the time before the table"},
	}, watchFlags()...)
}

func listCommand() *cli.Command {
	return &cli.Command{
		Name:      "list",
		Usage:     "list the members of the cluster (Member, Host, Role, State, TL, Receive LSN, Lag, Replay LSN, Lag)",
		ArgsUsage: "[CLUSTER]",
		Flags:     listFlags(),
		Action:    withCtl(func(ctx context.Context, x *ctl, c *cli.Context) error { return watch(ctx, x, c, c.String("format")) }),
	}
}

func topologyCommand() *cli.Command {
	return &cli.Command{
		Name:      "topology",
		Usage:     "show the replication tree: the leader, then its replicas",
		ArgsUsage: "[CLUSTER]",
		Flags:     listFlags()[1:],
		Action:    withCtl(func(ctx context.Context, x *ctl, c *cli.Context) error { return watch(ctx, x, c, "topology") }),
	}
}

// watchInterval reads -W and -w/--watch (seconds, as patronictl's float,
// or a duration).
func watchInterval(c *cli.Context) (time.Duration, error) {
	if s := c.String("watch"); s != "" {
		d, err := config.ParseDuration(s)
		if err != nil || d.D() <= 0 {
			return 0, fmt.Errorf("--watch %q: give a positive number of seconds, e.g. -w 5", s)
		}
		return d.D(), nil
	}
	if c.Bool("W") {
		return 2 * time.Second, nil
	}
	return 0, nil
}

// watch prints the member table once, or every interval with -W/-w until
// ctx ends (clearing the screen first, as patronictl does).
func watch(ctx context.Context, x *ctl, c *cli.Context, format string) error {
	interval, err := watchInterval(c)
	if err != nil {
		return err
	}
	for {
		v, err := x.view(ctx)
		if err != nil {
			return err
		}
		if interval > 0 {
			fmt.Fprint(x.out, "\033[H\033[2J")
		}
		if c.Bool("timestamp") {
			fmt.Fprintln(x.out, time.Now().Format("2006-01-02 15:04:05"))
		}
		if err := printMembers(x.out, v, format, c.Bool("extended")); err != nil {
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

// memberTable builds patronictl's member table for a view (Patroni 4's
// output_members): Receive LSN, Receive Lag, Replay LSN and Replay Lag
// (both lags headed "Lag" in pretty formats, in MiB); Pending restart,
// Pending restart reason, Scheduled restart and Tags when extended or
// when a member has a value for them.
func memberTable(v cluster.View, format string, extended bool) table {
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
	cols := []string{"Cluster", "Member", "Host", "Role", "State", "TL", "Receive LSN", "Receive Lag", "Replay LSN", "Replay Lag"}
	pending, tags := extended, extended
	for _, m := range members {
		pending = pending || m.PendingRestart
		tags = tags || len(m.Tags) > 0
	}
	if pending {
		cols = append(cols, "Pending restart")
	}
	if extended {
		cols = append(cols, "Pending restart reason", "Scheduled restart")
	}
	if tags {
		cols = append(cols, "Tags")
	}
	pretty := format == "pretty" || format == "topology" || format == ""
	t := table{columns: cols, right: map[string]bool{"TL": true, "Receive LSN": true, "Replay LSN": true, "Lag": true}}
	for _, m := range members {
		host := m.Host
		if appendPort && host != "" && m.Port != 0 {
			host += ":" + strconv.Itoa(m.Port)
		}
		tl := ""
		if m.Timeline > 0 {
			tl = strconv.FormatInt(m.Timeline, 10)
		}
		recvLSN, recvLag, replLSN, replLag := m.ReceiveLSN, m.ReceiveLag, m.ReplayLSN, m.ReplayLag
		// Patroni's compatibility with members that publish only one
		// position: a streaming replica's is a receive position.
		if recvLSN == "unknown" && replLSN == "unknown" && m.LSN != nil && m.LSN != "unknown" {
			if m.State == "streaming" {
				recvLSN, recvLag = m.LSN, m.Lag
			} else {
				replLSN, replLag = m.LSN, m.Lag
			}
		}
		row := []string{v.Scope, m.Name, host, roleTitle(m.Role), m.State, tl, lsnCell(recvLSN), lagMB(recvLag), lsnCell(replLSN), lagMB(replLag)}
		if pending {
			p := ""
			if m.PendingRestart {
				p = "*"
			}
			row = append(row, p)
		}
		if extended {
			row = append(row, "", "")
		}
		if tags {
			row = append(row, tagsCell(m.Tags, format == "pretty" || format == ""))
		}
		t.rows = append(t.rows, row)
	}
	if pretty {
		// The cluster goes in the title, not in a column.
		t.columns = t.columns[1:]
		for i := range t.rows {
			t.rows[i] = t.rows[i][1:]
		}
		for i, c := range t.columns {
			if c == "Receive Lag" || c == "Replay Lag" {
				t.columns[i] = "Lag"
			}
		}
		init := v.Initialize
		if init == "" {
			init = "uninitialized"
		}
		t.title = fmt.Sprintf(" Cluster: %s (%s) ", v.Scope, init)
	}
	return t
}

// lsnCell is a member's LSN as patronictl prints it: "" for the leader.
func lsnCell(lsn any) string {
	if lsn == nil {
		return ""
	}
	return fmt.Sprint(lsn)
}

// tagsCell writes tags as YAML, block style for the pretty table (one tag
// per line) and flow style elsewhere, as patronictl does.
func tagsCell(tags map[string]any, block bool) string {
	if len(tags) == 0 {
		return ""
	}
	if !block {
		keys := make([]string, 0, len(tags))
		for k := range tags {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		parts := make([]string, len(keys))
		for i, k := range keys {
			parts[i] = fmt.Sprintf("%s: %v", k, tags[k])
		}
		return "{" + strings.Join(parts, ", ") + "}"
	}
	b, err := yaml.Marshal(tags)
	if err != nil {
		return fmt.Sprint(tags)
	}
	return strings.TrimSpace(string(b))
}

// roleTitle is patronictl's role.replace('_', ' ').title().
func roleTitle(r string) string {
	words := strings.Fields(strings.ReplaceAll(r, "_", " "))
	for i, w := range words {
		words[i] = strings.ToUpper(w[:1]) + w[1:]
	}
	return strings.Join(words, " ")
}

// lagMB renders a lag in whole MiB (rounded), "" for the leader and
// when the member published no position ("unknown").
func lagMB(lag any) string {
	switch l := lag.(type) {
	case nil:
		return ""
	case string:
		if l == "unknown" {
			return ""
		}
		return l
	case int64:
		return strconv.FormatInt(int64(math.Round(float64(l)/(1<<20))), 10)
	case float64:
		return strconv.FormatInt(int64(math.Round(l/(1<<20))), 10)
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
func printMembers(w io.Writer, v cluster.View, format string, extended bool) error {
	if err := memberTable(v, format, extended).print(w, format); err != nil {
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
