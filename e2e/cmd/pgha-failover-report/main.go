// Command pgha-failover-report reads the runs scripts/bench-failover.sh
// recorded and prints one markdown table: for each scenario and client,
// each system's runs, min/median/max longest write gap, failed writes and
// lost writes, and the ratio of the median gaps (pgha/Patroni) when both
// systems ran. It is a benchmark tool, not a test.
//
// The runs directory holds <system>/<scenario>/<run>/ with event_ms (the
// Unix millisecond of the fault or request), <client>.log (pgha-writer's
// output) and <client>.final (the ids found on the final primary after the
// run, one per line; absent when it could not be read).
//
//	pgha-failover-report DIR
package main

import (
	"fmt"
	"os"
)

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "pgha-failover-report:", err)
		os.Exit(1)
	}
}

func run(args []string) error {
	if len(args) != 1 {
		return fmt.Errorf("usage: pgha-failover-report DIR")
	}
	runs, err := readRuns(args[0])
	if err != nil {
		return err
	}
	if len(runs) == 0 {
		return fmt.Errorf("no runs under %s", args[0])
	}
	printTable(os.Stdout, summarize(runs))
	printNotes(os.Stdout)
	return nil
}
