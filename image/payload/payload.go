// Package payload owns the format of the gate's payload partition: what
// `kiln build` puts on it and what the gate's appliance (pxe/appliance)
// reads from it, mounted read-only at /payload.
//
//	gate.json      Info: which lab and machine, the clock floor, the lab NIC
//	profile.yaml   the profile the image was built from, verbatim
//	bundle/        the netboot bundle (image/bundle's format)
//	secrets/       0700, files 0600: only the secrets the gate needs
package payload

import (
	"encoding/json"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// Paths inside the payload.
const (
	InfoFile    = "gate.json"
	ProfileFile = "profile.yaml"
	BundleDir   = "bundle"
	SecretsDir  = "secrets"
)

// Info is the payload's gate.json.
type Info struct {
	Lab     string `json:"lab"`
	Machine string `json:"machine"`
	// BuildTime is the clock floor: the gate, which has no RTC, never
	// runs its clock earlier than this.
	BuildTime time.Time `json:"build_time"`
	// InterfaceMAC is the gate's lab NIC.
	InterfaceMAC string `json:"interface_mac"`
	// Profile is the profile file, relative to the payload root.
	Profile string `json:"profile"`
}

// Check reports the first problem of an Info read from a card.
func (i Info) Check() error {
	if _, err := net.ParseMAC(i.InterfaceMAC); err != nil {
		return fmt.Errorf("%s interface_mac: %w", InfoFile, err)
	}
	switch {
	case i.Lab == "" || i.Machine == "":
		return fmt.Errorf("%s: no lab or machine", InfoFile)
	case i.BuildTime.IsZero():
		return fmt.Errorf("%s: no build_time", InfoFile)
	case i.Profile == "" || filepath.IsAbs(i.Profile) || strings.Contains(i.Profile, ".."):
		return fmt.Errorf("%s: profile %q: want a path inside the payload", InfoFile, i.Profile)
	}
	return nil
}

// ReadInfo reads and checks root/gate.json.
func ReadInfo(root string) (Info, error) {
	var i Info
	b, err := os.ReadFile(filepath.Join(root, InfoFile))
	if err != nil {
		return i, err
	}
	if err := json.Unmarshal(b, &i); err != nil {
		return i, fmt.Errorf("%s: %w", InfoFile, err)
	}
	return i, i.Check()
}

// WriteInfo writes root/gate.json.
func WriteInfo(root string, i Info) error {
	if err := i.Check(); err != nil {
		return err
	}
	b, err := json.MarshalIndent(i, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(root, InfoFile), append(b, '\n'), 0o644)
}
