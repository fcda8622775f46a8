package main

import (
	"context"

	"github.com/kilnlab/kiln/plan"
)

func runPlan(ctx context.Context, env *cli, args []string) error {
	fs := newFlags(env, "plan [--json] [PROFILE]", "Show, per machine, the disks chosen (by serial/WWN), what is wiped and what\nis kept, the partition table, the role image and the boot chain.")
	asJSON := fs.Bool("json", false, "print the plan as JSON (what the gate serves the installer)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	p, pl, err := loadPlan(fs.Args())
	if err != nil {
		return err
	}
	printWarnings(env.stderr, p)
	if *asJSON {
		return plan.WriteJSON(env.stdout, pl)
	}
	return plan.WriteTable(env.stdout, pl)
}
