// Command pghactl is the operator's CLI for a pgha cluster: list,
// switchover, failover, restart, reinit, pause, resume, config, query,
// remove, version.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/urfave/cli/v2"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "pghactl:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string) error {
	return newApp().RunContext(ctx, args)
}

// newApp builds the CLI; tests set its Reader and Writer.
func newApp() *cli.App {
	return &cli.App{
		Name:            "pghactl",
		Usage:           "operate a pgha cluster (patronictl-compatible commands)",
		HideHelpCommand: true,
		Flags:           globalFlags(),
		Commands: []*cli.Command{
			listCommand(), topologyCommand(), switchoverCommand(), failoverCommand(),
			restartCommand(), reloadCommand(), reinitCommand(), pauseCommand(), resumeCommand(),
			showConfigCommand(), editConfigCommand(), historyCommand(), dsnCommand(), flushCommand(),
			queryCommand(), removeCommand(), versionCommand(),
		},
	}
}
