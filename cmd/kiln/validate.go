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
	printWarnings(env, p)
	warned := ""
	switch n := len(p.Warnings); n {
	case 0:
	case 1:
		warned = ", 1 warning"
	default:
		warned = fmt.Sprintf(", %d warnings", n)
	}
	fmt.Fprintf(env.stdout, "%s: ok (%d machines%s)\n", p.Source, len(p.Machines), warned)
	return nil
}
