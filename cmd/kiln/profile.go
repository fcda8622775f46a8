package main

import (
	"fmt"

	"github.com/kilnlab/kiln/plan"
	"github.com/kilnlab/kiln/profiles"
)

// loadProfile reads the profile named on the command line, or the embedded
// reference lab when none is named. The profile is validated here, once.
func loadProfile(args []string) (*profiles.Profile, error) {
	switch len(args) {
	case 0:
		return profiles.Default()
	case 1:
		return profiles.Load(args[0])
	default:
		return nil, usagef("want at most one PROFILE, got %d arguments", len(args))
	}
}

// loadPlan loads a profile and computes its plan.
func loadPlan(args []string) (*profiles.Profile, *plan.Plan, error) {
	p, err := loadProfile(args)
	if err != nil {
		return nil, nil, err
	}
	pl, err := plan.Compute(p)
	if err != nil {
		return nil, nil, fmt.Errorf("plan %s: %w", p.Source, err)
	}
	return p, pl, nil
}
