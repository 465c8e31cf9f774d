package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/urfave/cli/v2"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/pgha/pgha/cluster"
	"github.com/pgha/pgha/config"
	"github.com/pgha/pgha/leader"
	"github.com/pgha/pgha/restapi"
)

// ctl is what every subcommand needs: where the cluster lives, how to
// reach its members' REST APIs, and the terminal.
type ctl struct {
	scope     string
	namespace string
	etcd      config.Etcd
	auth      config.BasicAuth
	// api and tlsCtl say how to check members' https APIs and which
	// client certificate to show them (restapi.ClientTLS).
	api      config.RESTAPI
	tlsCtl   config.Ctl
	insecure bool
	// pgAuth is the config file's superuser: pghactl query logs in as it
	// unless -U says otherwise.
	pgAuth config.Credentials

	out io.Writer
	in  *bufio.Reader
	// tty reports whether stdin is a terminal (confirmations need one).
	tty bool

	cli *clientv3.Client

	// args are the subcommand's positional arguments after patronictl's
	// cluster name (see withArgs).
	args []string
}

// etcdTimeout bounds one etcd request from pghactl.
const etcdTimeout = 5 * time.Second

// globalFlags are accepted before the subcommand.
func globalFlags() []cli.Flag {
	return []cli.Flag{
		&cli.StringFlag{Name: "config-file", Aliases: []string{"c"}, Usage: "node configuration `FILE` (etcd endpoints, scope, namespace, REST auth)", EnvVars: []string{"PGHACTL_CONFIG_FILE"}},
		&cli.StringFlag{Name: "dcs-url", Aliases: []string{"dcs", "d"}, Usage: "etcd `URL`, e.g. etcd3://127.0.0.1:2379 (comma-separated for several)", EnvVars: []string{"DCS_URL"}},
		&cli.StringFlag{Name: "scope", Usage: "cluster `NAME` (overrides the config file)"},
		&cli.StringFlag{Name: "namespace", Usage: "etcd key prefix (default /service/)"},
		&cli.BoolFlag{Name: "insecure", Aliases: []string{"k"}, Usage: "do not verify the REST API's TLS certificates"},
	}
}

// keysPghactlNeeds are config key prefixes whose problems stop pghactl;
// problems elsewhere (bin_dir on this machine, ...) do not concern it.
var keysPghactlNeeds = []string{"scope", "namespace", "etcd", "restapi.authentication.password", "restapi.cafile", "ctl"}

// newCtl builds the context from global flags.
func newCtl(c *cli.Context) (*ctl, error) {
	x := &ctl{out: c.App.Writer, namespace: config.DefaultNamespace, etcd: config.Default().Etcd}
	x.in = bufio.NewReader(c.App.Reader)
	if f, ok := c.App.Reader.(*os.File); ok {
		if fi, err := f.Stat(); err == nil && fi.Mode()&os.ModeCharDevice != 0 {
			x.tty = true
		}
	}
	if path := c.String("config-file"); path != "" {
		cfg, err := config.Load(path)
		if err != nil {
			ps := config.AsProblems(err)
			if ps == nil {
				return nil, err
			}
			var bad []string
			for _, p := range ps {
				for _, k := range keysPghactlNeeds {
					if p.Path == "" || p.Path == k || strings.HasPrefix(p.Path, k+".") {
						bad = append(bad, p.String())
						break
					}
				}
			}
			if len(bad) > 0 {
				return nil, fmt.Errorf("config file %s: %s", path, strings.Join(bad, "; "))
			}
		}
		x.scope, x.namespace, x.etcd = cfg.Scope, cfg.Namespace, cfg.Etcd
		x.auth, x.api, x.tlsCtl = cfg.RESTAPI.Authentication, cfg.RESTAPI, cfg.Ctl
		x.pgAuth = cfg.PostgreSQL.Authentication.Superuser
	}
	if d := c.String("dcs-url"); d != "" {
		eps, err := parseDCSURL(d)
		if err != nil {
			return nil, err
		}
		x.etcd.Endpoints = eps
	}
	if s := c.String("scope"); s != "" {
		x.scope = s
	}
	if n := c.String("namespace"); n != "" {
		x.namespace = n
	}
	x.insecure = c.Bool("insecure")
	if len(x.etcd.Endpoints) == 0 {
		return nil, errors.New("no etcd endpoints: pass -d etcd3://host:port or -c FILE")
	}
	return x, nil
}

// parseDCSURL reads etcd3://host:port[,host:port...] (etcd:// and http://
// too) into client endpoints.
func parseDCSURL(s string) ([]string, error) {
	var eps []string
	for _, part := range strings.Split(s, ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		scheme := "http"
		if i := strings.Index(part, "://"); i >= 0 {
			switch part[:i] {
			case "etcd", "etcd3", "http":
			case "https", "etcd3s", "etcds":
				scheme = "https"
			default:
				return nil, fmt.Errorf("dcs url %q: unknown scheme %q (use etcd3://host:port)", s, part[:i])
			}
			part = part[i+3:]
		}
		part = strings.TrimSuffix(part, "/")
		if _, _, err := net.SplitHostPort(part); err != nil {
			return nil, fmt.Errorf("dcs url %q: %q is not host:port", s, part)
		}
		eps = append(eps, scheme+"://"+part)
	}
	if len(eps) == 0 {
		return nil, fmt.Errorf("dcs url %q names no endpoint", s)
	}
	return eps, nil
}

// endpointURLs returns the endpoints as URLs clientv3 accepts.
func (x *ctl) endpointURLs() []string { return leader.EndpointURLs(x.etcd) }

// client opens the etcd client once (leader.NewClient: TLS, auth, dial
// timeout, as the daemon does).
func (x *ctl) client() (*clientv3.Client, error) {
	if x.cli != nil {
		return x.cli, nil
	}
	cli, err := leader.NewClient(x.etcd)
	if err != nil {
		return nil, err
	}
	x.cli = cli
	return cli, nil
}

func (x *ctl) close() {
	if x.cli != nil {
		x.cli.Close()
	}
}

// view reads the cluster from etcd. On failure it names the endpoints that
// do not answer.
func (x *ctl) view(ctx context.Context) (cluster.View, error) {
	cli, err := x.client()
	if err != nil {
		return cluster.View{}, err
	}
	rctx, cancel := context.WithTimeout(ctx, etcdTimeout)
	defer cancel()
	v, err := leader.ReadView(rctx, cli, x.namespace, x.scope)
	if err != nil {
		return v, x.etcdError(err)
	}
	return v, nil
}

// etcdError says which endpoints are unreachable.
func (x *ctl) etcdError(err error) error {
	var down []string
	for _, e := range x.endpointURLs() {
		u, perr := url.Parse(e)
		if perr != nil {
			continue
		}
		conn, derr := net.DialTimeout("tcp", u.Host, time.Second)
		if derr != nil {
			down = append(down, u.Host+" ("+derr.Error()+")")
			continue
		}
		conn.Close()
	}
	if len(down) > 0 {
		return fmt.Errorf("etcd unreachable at %s: %w", strings.Join(down, ", "), err)
	}
	return fmt.Errorf("etcd at %s: %w", strings.Join(x.endpointURLs(), ","), err)
}

// httpClient is the REST client (member APIs): https checked against
// ctl.cacert or restapi.cafile, ctl.certfile shown as the client
// certificate, -k or ctl.insecure skipping the check, as patronictl.
func (x *ctl) httpClient(timeout time.Duration) (*http.Client, error) {
	tc, err := restapi.ClientTLS(x.tlsCtl, x.api, x.insecure)
	if err != nil {
		return nil, err
	}
	return &http.Client{Timeout: timeout, Transport: &http.Transport{TLSClientConfig: tc, Proxy: nil}}, nil
}

// request sends method to the member's REST API path with an optional JSON
// body and returns the status and body.
func (x *ctl) request(ctx context.Context, m cluster.Member, method, path, body string, timeout time.Duration) (int, string, error) {
	if m.APIURL == "" {
		return 0, "", fmt.Errorf("member %s publishes no api_url", m.Name)
	}
	u, err := url.Parse(m.APIURL)
	if err != nil {
		return 0, "", fmt.Errorf("member %s api_url %q: %w", m.Name, m.APIURL, err)
	}
	u.Path, u.RawQuery = path, ""
	hc, err := x.httpClient(timeout)
	if err != nil {
		return 0, "", err
	}
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, u.String(), rd)
	if err != nil {
		return 0, "", err
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	if x.auth.Username != "" {
		req.SetBasicAuth(x.auth.Username, x.auth.Password)
	}
	resp, err := hc.Do(req)
	if err != nil {
		return 0, "", fmt.Errorf("member %s REST API at %s: %w", m.Name, u.Host, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	return resp.StatusCode, strings.TrimSpace(string(b)), nil
}

// confirm asks a yes/no question on the terminal; without one it refuses.
func (x *ctl) confirm(question string) error {
	if !x.tty {
		return fmt.Errorf("refusing to go on without confirmation: stdin is not a terminal (pass --force)")
	}
	fmt.Fprintf(x.out, "%s [y/N]: ", question)
	line, _ := x.in.ReadString('\n')
	switch strings.ToLower(strings.TrimSpace(line)) {
	case "y", "yes":
		return nil
	}
	return errors.New("aborted")
}

// ask reads one typed line after "question: ", as click.prompt does;
// unlike confirm it works without a terminal too, since the answer must
// be typed out (patronictl remove's confirmations).
func (x *ctl) ask(question string) (string, error) {
	fmt.Fprintf(x.out, "%s: ", question)
	line, err := x.in.ReadString('\n')
	if err != nil && line == "" {
		return "", fmt.Errorf("%s: no answer on stdin", question)
	}
	return strings.TrimSpace(line), nil
}

// prompt asks for a value with a default on the terminal.
func (x *ctl) prompt(question, def string) (string, error) {
	if !x.tty {
		return "", fmt.Errorf("%s: stdin is not a terminal; pass it as a flag (or --force)", question)
	}
	fmt.Fprintf(x.out, "%s [%s]: ", question, def)
	line, _ := x.in.ReadString('\n')
	if line = strings.TrimSpace(line); line == "" {
		return def, nil
	}
	return line, nil
}

// member finds a member by name, naming the known ones when absent.
func member(v cluster.View, name string) (cluster.Member, error) {
	if m, ok := v.Member(name); ok {
		return m, nil
	}
	names := make([]string, 0, len(v.Members))
	for _, m := range v.Members {
		names = append(names, m.Name)
	}
	return cluster.Member{}, fmt.Errorf("unknown member %q in cluster %s (members: %s)", name, v.Scope, strings.Join(names, ", "))
}

// withCtl wraps a subcommand action that takes no positional argument
// but patronictl's cluster name.
func withCtl(fn func(ctx context.Context, x *ctl, c *cli.Context) error) cli.ActionFunc {
	return withArgs(clusterOnly, fn)
}

// withArgs wraps a subcommand action with the context's setup and
// teardown, taking patronictl's positional cluster name off the
// arguments (shape says what may follow it); x.args holds the rest.
func withArgs(shape argShape, fn func(ctx context.Context, x *ctl, c *cli.Context) error) cli.ActionFunc {
	return func(c *cli.Context) error {
		x, err := newCtl(c)
		if err != nil {
			return err
		}
		defer x.close()
		pos, err := positional(c)
		if err != nil {
			return err
		}
		if x.args, err = x.takeCluster(c.Context, pos, shape); err != nil {
			return err
		}
		if x.scope == "" {
			return errors.New("no cluster named: pass --scope NAME, -c FILE with a scope, or the cluster name as patronictl does (pghactl list NAME)")
		}
		return fn(c.Context, x, c)
	}
}

// positional returns the subcommand's positional arguments, applying any
// flags written after them ("restart node2 --force"), which urfave/cli
// leaves in Args but patronictl users expect to work.
func positional(c *cli.Context) ([]string, error) {
	args := c.Args().Slice()
	var pos []string
	for i := 0; i < len(args); i++ {
		a := args[i]
		if a == "--" {
			pos = append(pos, args[i+1:]...)
			break
		}
		if !strings.HasPrefix(a, "-") || a == "-" {
			pos = append(pos, a)
			continue
		}
		name, val, hasVal := strings.Cut(strings.TrimLeft(a, "-"), "=")
		f := findFlag(c.Command.Flags, name)
		if f == nil {
			return nil, fmt.Errorf("unknown flag %s for %s", a, c.Command.Name)
		}
		if _, isBool := f.(*cli.BoolFlag); isBool {
			if !hasVal {
				val = "true"
			}
		} else if !hasVal {
			if i+1 >= len(args) {
				return nil, fmt.Errorf("flag %s needs a value", a)
			}
			i++
			val = args[i]
		}
		// Set every alias: urfave/cli keeps one value per name, and the
		// action reads the flag by its first name (-f sets "format").
		for _, n := range f.Names() {
			if err := c.Set(n, val); err != nil {
				return nil, fmt.Errorf("flag %s: %w", a, err)
			}
		}
	}
	return pos, nil
}

func findFlag(flags []cli.Flag, name string) cli.Flag {
	for _, f := range flags {
		for _, n := range f.Names() {
			if n == name {
				return f
			}
		}
	}
	return nil
}
