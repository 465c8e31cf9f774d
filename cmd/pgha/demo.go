package main

import (
	"errors"

	"github.com/urfave/cli/v2"
)

// demoCommand runs a local cluster. Owned by the HA-loop work (issue 3).
func demoCommand() *cli.Command {
	return &cli.Command{
		Name:  "demo",
		Usage: "run a local 3-node cluster with an embedded etcd",
		Action: func(c *cli.Context) error {
			return errors.New("demo: not built yet")
		},
	}
}
