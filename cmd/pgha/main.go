// Command pgha is the daemon that runs beside each Postgres instance:
// leader election on etcd, replica provisioning, failover, the
// Patroni-compatible REST API and the embedded pooler.
package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/urfave/cli/v2"

	"github.com/pgha/pgha/fence"
)

func main() {
	// A daemon starts its fence keeper as this same program.
	fence.RunKeeperIfAsked()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args, os.Stdout, os.Stderr)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "pgha:", err)
		os.Exit(exitCode(err))
	}
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	app := &cli.App{
		Writer:    stdout,
		ErrWriter: stderr,
		Name:      "pgha",
		Usage:     "PostgreSQL high availability with a built-in connection pooler",
		Commands: []*cli.Command{
			runCommand(),
			validateConfigCommand(),
			demoCommand(),
			convertCommand(),
		},
		HideHelpCommand: true,
	}
	return app.RunContext(ctx, args)
}

// exitError carries a process exit code with its message.
type exitError struct {
	code int
	msg  string
}

func (e *exitError) Error() string { return e.msg }

func exitCode(err error) int {
	if e, ok := err.(*exitError); ok {
		return e.code
	}
	return 1
}
