package main

import (
	"errors"

	"github.com/urfave/cli/v2"
)

// runCommand is the daemon. Owned by the HA-loop work (issue 3).
func runCommand() *cli.Command {
	return &cli.Command{
		Name:  "run",
		Usage: "run the daemon for one node",
		Flags: []cli.Flag{&cli.StringFlag{Name: "config", Aliases: []string{"c"}, Usage: "node config `FILE`", Required: true}},
		Action: func(c *cli.Context) error {
			return errors.New("run: the HA loop is not built yet")
		},
	}
}
