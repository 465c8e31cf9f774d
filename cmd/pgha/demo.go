package main

import (
	"github.com/urfave/cli/v2"

	"github.com/pgha/pgha/internal/demo"
)

// demoCommand runs a local cluster: pgha demo --dir DIR [--nodes 3] [--base-port B].
func demoCommand() *cli.Command {
	return &cli.Command{
		Name:  "demo",
		Usage: "run a local cluster (one embedded etcd, one pgha run child per node) until Ctrl-C",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "dir", Usage: "`DIR` for configs, data and logs", Required: true},
			&cli.IntFlag{Name: "nodes", Value: 3, Usage: "number of nodes"},
			&cli.IntFlag{Name: "base-port", Value: 15430, Usage: "`B`: node i's Postgres on B+i, REST API B+100+i, pooler B+200+i, read-only pooler B+300+i, etcd B+400"},
		},
		Action: func(c *cli.Context) error {
			return demo.Run(c.Context, demo.Options{
				Dir:      c.String("dir"),
				Nodes:    c.Int("nodes"),
				BasePort: c.Int("base-port"),
				Out:      c.App.Writer,
			})
		},
	}
}
