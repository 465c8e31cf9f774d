// Command pgha-pooler-bench runs pgha's pooler alone in front of a fixed
// Postgres (for scripts/bench-pooler.sh), or opens idle clients to measure
// memory per client. It is a benchmark tool, not the daemon.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "pgha-pooler-bench:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string) error {
	if len(args) == 0 {
		return fmt.Errorf("usage: pgha-pooler-bench serve|idle [flags]")
	}
	fs := flag.NewFlagSet(args[0], flag.ContinueOnError)
	switch args[0] {
	case "serve":
		return serve(ctx, fs, args[1:])
	case "idle":
		return idle(ctx, fs, args[1:])
	}
	return fmt.Errorf("unknown subcommand %q: want serve or idle", args[0])
}
