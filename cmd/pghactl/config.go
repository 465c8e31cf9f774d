package main

import (
	"context"
	"errors"
	"fmt"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"github.com/urfave/cli/v2"
	"gopkg.in/yaml.v3"

	"github.com/pgha/pgha/config"
	"github.com/pgha/pgha/leader"
)

func showConfigCommand() *cli.Command {
	return &cli.Command{
		Name:  "show-config",
		Usage: "print the cluster's dynamic configuration (etcd's config key) as YAML",
		Action: withCtl(func(ctx context.Context, x *ctl, c *cli.Context) error {
			v, err := x.view(ctx)
			if err != nil {
				return err
			}
			if v.ConfigRevision == 0 {
				return fmt.Errorf("cluster %s has no config key in etcd yet (not bootstrapped?)", x.scope)
			}
			m, err := config.DynamicToMap(v.Config)
			if err != nil {
				return err
			}
			s, err := toYAML(m)
			if err != nil {
				return err
			}
			fmt.Fprint(x.out, s)
			return nil
		}),
	}
}

func editConfigCommand() *cli.Command {
	return &cli.Command{
		Name:  "edit-config",
		Usage: "change the dynamic configuration (shows the diff, asks, then compare-and-swaps the config key)",
		Flags: []cli.Flag{
			&cli.StringSliceFlag{Name: "set", Aliases: []string{"s"}, Usage: "set `KEY=VALUE` (dotted key, YAML value; null deletes)"},
			&cli.StringSliceFlag{Name: "pg", Aliases: []string{"p"}, Usage: "set postgresql.parameters.`PARAM=VALUE`"},
			&cli.BoolFlag{Name: "quiet", Aliases: []string{"q"}, Usage: "do not show the diff"},
			&cli.BoolFlag{Name: "force", Usage: "do not ask for confirmation"},
		},
		Action: withCtl(editConfig),
	}
}

func toYAML(m map[string]any) (string, error) {
	b, err := yaml.Marshal(intsAsInts(m))
	if err != nil {
		return "", fmt.Errorf("render config as YAML: %w", err)
	}
	return string(b), nil
}

// intsAsInts turns JSON's float64 whole numbers back into integers, so
// YAML prints 1048576 rather than 1.048576e+06.
func intsAsInts(v any) any {
	switch x := v.(type) {
	case map[string]any:
		out := make(map[string]any, len(x))
		for k, e := range x {
			out[k] = intsAsInts(e)
		}
		return out
	case []any:
		out := make([]any, len(x))
		for i, e := range x {
			out[i] = intsAsInts(e)
		}
		return out
	case float64:
		if x == math.Trunc(x) && math.Abs(x) < 1<<53 {
			return int64(x)
		}
	}
	return v
}

// setPatch turns "a.b.c=value" into a nested patch; postgresql.parameters
// keys keep their dots (Postgres parameters such as "pg_stat_statements.max").
func setPatch(patch map[string]any, kv string) error {
	key, val, ok := strings.Cut(kv, "=")
	key = strings.TrimSpace(key)
	if !ok || key == "" {
		return fmt.Errorf("-s %q: write KEY=VALUE, e.g. ttl=30 or postgresql.parameters.work_mem=8MB", kv)
	}
	var value any
	if err := yaml.Unmarshal([]byte(val), &value); err != nil {
		return fmt.Errorf("-s %q: value is not YAML: %w", kv, err)
	}
	var path []string
	if rest, ok := strings.CutPrefix(key, "postgresql.parameters."); ok {
		path = []string{"postgresql", "parameters", rest}
	} else {
		path = strings.Split(key, ".")
	}
	cur := patch
	for _, p := range path[:len(path)-1] {
		next, ok := cur[p].(map[string]any)
		if !ok {
			next = map[string]any{}
			cur[p] = next
		}
		cur = next
	}
	cur[path[len(path)-1]] = value
	return nil
}

func editConfig(ctx context.Context, x *ctl, c *cli.Context) error {
	v, err := x.view(ctx)
	if err != nil {
		return err
	}
	if v.ConfigRevision == 0 {
		return fmt.Errorf("cluster %s has no config key in etcd yet (not bootstrapped?)", x.scope)
	}
	before, err := config.DynamicToMap(v.Config)
	if err != nil {
		return err
	}
	beforeYAML, err := toYAML(before)
	if err != nil {
		return err
	}
	after, _ := config.DynamicToMap(v.Config)
	sets := c.StringSlice("set")
	for _, p := range c.StringSlice("pg") {
		sets = append(sets, "postgresql.parameters."+p)
	}
	if len(sets) > 0 {
		patch := map[string]any{}
		for _, kv := range sets {
			if err := setPatch(patch, kv); err != nil {
				return err
			}
		}
		config.MergePatch(after, patch)
	} else {
		if after, err = x.editInEditor(beforeYAML); err != nil {
			return err
		}
	}
	d, err := config.DecodeDynamicMap(after)
	if err != nil {
		return fmt.Errorf("refusing the change: %w", err)
	}
	final, err := config.DynamicToMap(d)
	if err != nil {
		return err
	}
	afterYAML, err := toYAML(final)
	if err != nil {
		return err
	}
	if afterYAML == beforeYAML {
		fmt.Fprintln(x.out, "Not changed")
		return nil
	}
	if !c.Bool("quiet") {
		fmt.Fprint(x.out, unifiedDiff(beforeYAML, afterYAML, "before editing", "after editing"))
	}
	if !c.Bool("force") {
		if err := x.confirm("Apply these changes?"); err != nil {
			return fmt.Errorf("edit-config aborted: %w", err)
		}
	}
	cli, err := x.client()
	if err != nil {
		return err
	}
	wctx, cancel := context.WithTimeout(ctx, etcdTimeout)
	defer cancel()
	if err := leader.CASConfig(wctx, cli, x.namespace, x.scope, d, v.ConfigRevision); err != nil {
		if errors.Is(err, leader.ErrConflict) {
			return errors.New("the config changed while you edited it: run edit-config again")
		}
		return x.etcdError(err)
	}
	fmt.Fprintln(x.out, "Configuration changed")
	return nil
}

// editInEditor opens $EDITOR (vi) on the YAML and returns what was saved.
func (x *ctl) editInEditor(text string) (map[string]any, error) {
	if !x.tty {
		return nil, errors.New("nothing to change: pass -s KEY=VALUE or -p PARAM=VALUE (an editor needs a terminal)")
	}
	dir, err := os.MkdirTemp("", "pghactl-edit-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	path := filepath.Join(dir, x.scope+"-config.yaml")
	if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
		return nil, err
	}
	editor := os.Getenv("EDITOR")
	if editor == "" {
		editor = "vi"
	}
	cmd := exec.Command(editor, path)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
	if err := cmd.Run(); err != nil {
		return nil, fmt.Errorf("editor %s: %w", editor, err)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	m := map[string]any{}
	if err := yaml.Unmarshal(b, &m); err != nil {
		return nil, fmt.Errorf("edited config is not YAML: %w", err)
	}
	return m, nil
}
