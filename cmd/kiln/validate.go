package main

import (
	"context"
	"fmt"
)

func runValidate(ctx context.Context, env *cli, args []string) error {
	fs := newFlags(env, "validate [PROFILE]", "Check a profile: strict decoding (unknown keys are errors) and every rule\nof the lab; each problem names file:line:col and the field.")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	p, _, err := loadPlan(fs.Args())
	if err != nil {
		return err
	}
	fmt.Fprintf(env.stdout, "%s: ok (%d machines)\n", p.Source, len(p.Machines))
	return nil
}
