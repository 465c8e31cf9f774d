package main

import (
	"fmt"

	"github.com/urfave/cli/v2"

	"github.com/pgha/pgha/config"
)

func validateConfigCommand() *cli.Command {
	return &cli.Command{
		Name:      "validate-config",
		Usage:     "check a node config file; exit 0 when valid, 2 with one line per problem otherwise",
		ArgsUsage: "FILE",
		Action: func(c *cli.Context) error {
			if c.NArg() != 1 {
				return &exitError{code: 2, msg: "validate-config: give exactly one config file: pgha validate-config /etc/pgha/node.yml"}
			}
			path := c.Args().First()
			_, err := config.Load(path)
			if err == nil {
				fmt.Fprintf(c.App.Writer, "%s: valid\n", path)
				return nil
			}
			for _, p := range config.AsProblems(err) {
				fmt.Fprintf(c.App.ErrWriter, "%s: %s\n", path, p)
			}
			return &exitError{code: 2, msg: fmt.Sprintf("%s: %d problem(s)", path, len(config.AsProblems(err)))}
		},
	}
}
