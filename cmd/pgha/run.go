package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/urfave/cli/v2"

	"github.com/pgha/pgha/config"
	"github.com/pgha/pgha/internal/daemon"
)

// runCommand is the daemon: pgha run -c FILE. SIGTERM/SIGINT stop it
// cleanly; SIGHUP re-reads FILE.
func runCommand() *cli.Command {
	return &cli.Command{
		Name:  "run",
		Usage: "run the daemon for one node",
		Flags: []cli.Flag{&cli.StringFlag{Name: "config", Aliases: []string{"c"}, Usage: "node config `FILE`", Required: true}},
		Action: func(c *cli.Context) error {
			return runDaemon(c.Context, c.String("config"), c.App.ErrWriter)
		},
	}
}

func runDaemon(ctx context.Context, path string, stderr io.Writer) error {
	cfg, err := config.Load(path)
	if err != nil {
		for _, p := range config.AsProblems(err) {
			fmt.Fprintf(stderr, "%s: %s\n", path, p)
		}
		return &exitError{code: 2, msg: fmt.Sprintf("%s: invalid configuration (pgha validate-config %s lists the problems)", path, path)}
	}
	level := new(slog.LevelVar)
	log := newLogger(cfg.Log, level, stderr)
	d, err := daemon.New(ctx, cfg, log)
	if err != nil {
		return err
	}
	d.OnReload(func(c config.Config) ([]string, error) {
		return nil, level.UnmarshalText([]byte(c.Log.Level))
	})
	if err := d.AddComponents(path); err != nil {
		return err
	}
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	// SIGUSR2 detaches: the daemon exits at once and leaves Postgres
	// running as it is, its lease and leader key in place and the fence
	// keeper guarding them; a daemon started again within the lease
	// adopts it (an upgrade without a switchover).
	usr2 := make(chan os.Signal, 1)
	signal.Notify(usr2, syscall.SIGUSR2)
	defer signal.Stop(usr2)
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	detached := false
	d.Add("sigusr2", func(ctx context.Context) error {
		select {
		case <-ctx.Done():
		case <-usr2:
			log.Warn("SIGUSR2: detaching: postgres keeps running under the fence keeper; start pgha again before the lease runs out to adopt it")
			detached = true
			d.Kill()
			cancel()
		}
		return nil
	})
	d.Add("sighup", func(ctx context.Context) error {
		for {
			select {
			case <-ctx.Done():
				return nil
			case <-hup:
				if err := d.ReloadFile(ctx, path); errors.Is(err, daemon.ErrNeedsRestart) {
					log.Warn("SIGHUP: configuration reloaded; some changes need a restart", "err", err)
				} else if err != nil {
					log.Error("SIGHUP: configuration not reloaded", "err", err)
				}
			}
		}
	})
	log.Info("pgha starting", "member", cfg.Name, "scope", cfg.Scope, "postgres", cfg.PostgreSQL.Listen)
	err = d.Run(ctx)
	if detached {
		log.Info("pgha detached", "member", cfg.Name)
		return &exitError{code: ExitDetached, msg: "detached (SIGUSR2): postgres left running for the next daemon to adopt"}
	}
	log.Info("pgha stopped", "member", cfg.Name)
	return err
}

// ExitDetached is pgha run's exit status after SIGUSR2 (EX_TEMPFAIL):
// a service manager should start it again at once.
const ExitDetached = 75

func newLogger(c config.Log, level *slog.LevelVar, w io.Writer) *slog.Logger {
	_ = level.UnmarshalText([]byte(c.Level))
	opts := &slog.HandlerOptions{Level: level}
	if c.Format == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}
