package main

import (
	"context"
	"fmt"

	"github.com/urfave/cli/v2"

	"github.com/pgha/pgha/cluster"
	"github.com/pgha/pgha/restapi"
)

func dsnCommand() *cli.Command {
	return &cli.Command{
		Name:      "dsn",
		Usage:     "print a connection string for a member (the leader by default)",
		ArgsUsage: "[CLUSTER] [MEMBER]",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "role", Aliases: []string{"r"}, Usage: "any member with this role: leader, primary or replica"},
			&cli.StringFlag{Name: "member", Aliases: []string{"m"}, Usage: "this member"},
		},
		Action: withArgs(clusterMembers, func(ctx context.Context, x *ctl, c *cli.Context) error {
			args := x.args
			name := c.String("member")
			if name == "" && len(args) > 0 {
				name = args[0]
			}
			role := c.String("role")
			if name != "" && role != "" {
				return fmt.Errorf("--role and a member name are mutually exclusive")
			}
			v, err := x.view(ctx)
			if err != nil {
				return err
			}
			var m cluster.Member
			switch {
			case name != "":
				if m, err = member(v, name); err != nil {
					return err
				}
			case role == "" || role == "leader" || role == "primary" || role == "master":
				l, ok := v.LeaderMember()
				if !ok {
					return fmt.Errorf("cluster %s has no leader now: name a member", x.scope)
				}
				m = l
			default:
				ms, err := selectMembers(v, nil, role)
				if err != nil {
					return err
				}
				m = ms[0]
			}
			host, port := restapi.HostPort(m.ConnURL)
			if host == "" {
				return fmt.Errorf("member %s publishes no usable conn_url (%q)", m.Name, m.ConnURL)
			}
			if port == 0 {
				port = 5432
			}
			fmt.Fprintf(x.out, "host=%s port=%d\n", host, port)
			return nil
		}),
	}
}
