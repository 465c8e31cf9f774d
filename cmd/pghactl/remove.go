package main

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/urfave/cli/v2"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/pgha/pgha/leader"
)

func removeCommand() *cli.Command {
	return &cli.Command{
		Name: "remove",
		Usage: "wipe the cluster's keys from etcd (after the cluster name, \"Yes I am aware\" and, " +
			"while it has a leader, the leader's name are typed), as patronictl remove",
		ArgsUsage: "CLUSTER",
		Flags:     []cli.Flag{formatFlag()},
		Action: withCtl(func(ctx context.Context, x *ctl, c *cli.Context) error {
			if c.NArg() == 0 {
				return errors.New("name the cluster to remove: pghactl remove CLUSTER")
			}
			v, err := x.view(ctx)
			if err != nil {
				return err
			}
			if err := printMembers(x.out, v, c.String("format"), false); err != nil {
				return err
			}
			if s, err := x.ask("Please confirm the cluster name to remove"); err != nil {
				return err
			} else if s != x.scope {
				return errors.New("cluster names specified do not match")
			}
			const aware = "Yes I am aware"
			if s, err := x.ask(fmt.Sprintf("You are about to remove all information in DCS for %s, please type: %q", x.scope, aware)); err != nil {
				return err
			} else if s != aware {
				return fmt.Errorf("you did not exactly type %q", aware)
			}
			if v.Leader != "" {
				if s, err := x.ask("This cluster currently is healthy. Please specify the leader name to continue"); err != nil {
					return err
				} else if s != v.Leader {
					return errors.New("you did not specify the current leader of the cluster")
				}
			}
			cli, err := x.client()
			if err != nil {
				return err
			}
			dctx, cancel := context.WithTimeout(ctx, etcdTimeout)
			defer cancel()
			prefix := leader.Prefix(x.namespace, x.scope)
			resp, err := cli.Delete(dctx, prefix, clientv3.WithPrefix())
			if err != nil {
				return x.etcdError(err)
			}
			fmt.Fprintf(x.out, "Removed %d keys under %s\n", resp.Deleted, strings.TrimSuffix(prefix, "/"))
			return nil
		}),
	}
}
