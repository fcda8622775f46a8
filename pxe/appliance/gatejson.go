package appliance

import (
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// GateInfo is the payload's gate.json, written by the image builder.
type GateInfo struct {
	Lab     string `json:"lab"`
	Machine string `json:"machine"`
	// BuildTime is the clock floor: the gate's clock never runs earlier.
	BuildTime time.Time `json:"build_time"`
	// InterfaceMAC is the lab NIC's MAC.
	InterfaceMAC string `json:"interface_mac"`
	// Profile is the profile file, relative to the payload root.
	Profile string `json:"profile"`
}

// readGateInfo reads and checks dir/gate.json.
func readGateInfo(dir string) (GateInfo, net.HardwareAddr, error) {
	var g GateInfo
	b, err := os.ReadFile(filepath.Join(dir, "gate.json"))
	if err != nil {
		return g, nil, err
	}
	if err := json.Unmarshal(b, &g); err != nil {
		return g, nil, fmt.Errorf("gate.json: %w", err)
	}
	mac, err := net.ParseMAC(g.InterfaceMAC)
	if err != nil {
		return g, nil, fmt.Errorf("gate.json interface_mac: %w", err)
	}
	switch {
	case g.Machine == "":
		err = errors.New("gate.json: no machine")
	case g.BuildTime.IsZero():
		err = errors.New("gate.json: no build_time")
	case g.Profile == "" || filepath.IsAbs(g.Profile) || strings.Contains(g.Profile, ".."):
		err = fmt.Errorf("gate.json: profile %q: want a path inside the payload", g.Profile)
	}
	return g, mac, err
}
