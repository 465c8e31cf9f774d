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
		Usage: "write a pgha node config from a Patroni config (--patroni patroni.yml) and/or a PgBouncer config (--pgbouncer pgbouncer.ini)",
		Description: "Keys that cannot be carried over are listed on stderr, one per line with the reason. " +
			"With --patroni the output is a whole node config, checked as validate-config does; exit 2 when it does not pass " +
			"(it is written anyway). With --pgbouncer alone it is the pooler: section to put in a node config; " +
			"with both, that section replaces the Patroni conversion's (disabled) pooler.",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "patroni", Usage: "the Patroni YAML file"},
			&cli.StringFlag{Name: "pgbouncer", Usage: "the PgBouncer ini file ([pgbouncer], [databases], [users]; %include followed)"},
			&cli.StringFlag{Name: "userlist", Usage: "PgBouncer's userlist.txt, to check (default: its auth_file)"},
			&cli.StringSliceFlag{Name: "env-file", Usage: "KEY=VALUE lines (a Docker env_file) whose PATRONI_* variables override the file, as in Patroni"},
			&cli.BoolFlag{Name: "env", Usage: "apply this process's PATRONI_* variables too, as Patroni does"},
		},
		Action: func(c *cli.Context) error {
			if c.String("patroni") == "" && c.String("pgbouncer") == "" {
				return &exitError{code: 2, msg: "convert: name a --patroni file, a --pgbouncer file, or both"}
			}
			var pool *config.Pooler
			if ini := c.String("pgbouncer"); ini != "" {
				p, err := convertPgBouncer(c, ini, c.String("userlist"))
				if err != nil {
					return err
				}
				pool = &p
			}
			if c.String("patroni") == "" {
				return writePoolerSection(c, *pool)
			}
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
			if pool != nil {
				if res.YAML, err = convert.WithPooler(res.YAML, *pool); err != nil {
					return &exitError{code: 2, msg: err.Error()}
				}
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

// convertPgBouncer reads a pgbouncer.ini (and a userlist) and returns the
// pooler settings, listing on stderr what could not be carried.
func convertPgBouncer(c *cli.Context, ini, userlist string) (config.Pooler, error) {
	data, err := os.ReadFile(ini)
	if err != nil {
		return config.Pooler{}, &exitError{code: 2, msg: fmt.Sprintf("convert: %v", err)}
	}
	var users []byte
	if userlist != "" {
		if users, err = os.ReadFile(userlist); err != nil {
			return config.Pooler{}, &exitError{code: 2, msg: fmt.Sprintf("convert: %v", err)}
		}
	}
	p, notes, err := convert.FromPgBouncer(data, users, ini)
	for _, n := range notes {
		fmt.Fprintf(c.App.ErrWriter, "%s\n", n)
	}
	if err != nil {
		return config.Pooler{}, &exitError{code: 2, msg: err.Error()}
	}
	return p, nil
}

// writePoolerSection prints a node config's pooler: section.
func writePoolerSection(c *cli.Context, p config.Pooler) error {
	b, err := convert.PoolerSection(p)
	if err != nil {
		return &exitError{code: 2, msg: err.Error()}
	}
	_, err = c.App.Writer.Write(b)
	return err
}
