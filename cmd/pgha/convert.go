package main

import (
	"fmt"
	"os"
	"path/filepath"

	"github.com/urfave/cli/v2"

	"github.com/pgha/pgha/config"
	"github.com/pgha/pgha/internal/convert"
)

func convertCommand() *cli.Command {
	return &cli.Command{
		Name:  "convert",
		Usage: "write a pgha node config from a Patroni config: pgha convert --patroni patroni.yml > node.yml",
		Description: "Keys that cannot be carried over are listed on stderr, one per line with the reason. " +
			"The output is then checked as validate-config does; exit 2 when it does not pass (it is written anyway).",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "patroni", Usage: "the Patroni YAML file", Required: true},
			&cli.StringSliceFlag{Name: "env-file", Usage: "KEY=VALUE lines (a Docker env_file) whose PATRONI_* variables override the file, as in Patroni"},
			&cli.BoolFlag{Name: "env", Usage: "apply this process's PATRONI_* variables too, as Patroni does"},
		},
		Action: func(c *cli.Context) error {
			path := c.String("patroni")
			data, err := os.ReadFile(path)
			if err != nil {
				return &exitError{code: 2, msg: fmt.Sprintf("convert: %v", err)}
			}
			opt := convert.Options{Source: filepath.Base(path)}
			if abs, err := filepath.Abs(filepath.Dir(path)); err == nil {
				opt.BaseDir = abs
			}
			opt.Hostname, _ = os.Hostname()
			for _, f := range c.StringSlice("env-file") {
				lines, err := convert.ReadEnvFile(f)
				if err != nil {
					return &exitError{code: 2, msg: fmt.Sprintf("convert: %v", err)}
				}
				opt.Env = append(opt.Env, lines...)
			}
			if c.Bool("env") {
				opt.Env = append(opt.Env, os.Environ()...)
			}
			res, err := convert.Convert(data, opt)
			if err != nil {
				return &exitError{code: 2, msg: err.Error()}
			}
			if _, err := c.App.Writer.Write(res.YAML); err != nil {
				return fmt.Errorf("convert: write: %w", err)
			}
			for _, n := range res.Notes {
				fmt.Fprintf(c.App.ErrWriter, "%s\n", n)
			}
			if _, err := config.Parse(res.YAML, nil); err != nil {
				problems := config.AsProblems(err)
				for _, p := range problems {
					fmt.Fprintf(c.App.ErrWriter, "validate-config: %s\n", p)
				}
				return &exitError{code: 2, msg: fmt.Sprintf("convert: the output has %d problem(s) validate-config would refuse: fix them in the output", len(problems))}
			}
			return nil
		},
	}
}
