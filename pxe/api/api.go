// Package api owns the gate HTTP API's wire format: the routes the gate
// serves and the installer and the role OS call, and the JSON bodies on
// them. The gate (pxe/httpd) and its clients (installer/gateclient) both
// import it, so the two sides cannot drift apart; what each side checks
// of what it receives stays with that side.
package api

import (
	"github.com/kilnlab/kiln/image/bundle"
	"github.com/kilnlab/kiln/plan"
)

// Route prefixes; the machine's MAC (or, under PathFiles, the bundle
// path) follows. Install, progress and result carry ?token=.
const (
	PathFiles    = "/files/"
	PathInstall  = "/api/v1/install/"
	PathProgress = "/api/v1/progress/"
	PathResult   = "/api/v1/result/"
	PathBooted   = "/api/v1/booted/"
)

// Keys of InstallManifest.Files: the bundle files an install writes.
const (
	FileESP    = "esp"
	FileRoot   = "root"
	FileState  = "state"
	FileGPTMBR = "gptmbr"
)

// InstallManifest is GET PathInstall{mac}'s answer.
type InstallManifest struct {
	Machine plan.Machine           `json:"machine"`
	Files   map[string]bundle.File `json:"files"`
}

// Progress is POST PathProgress{mac}'s body.
type Progress struct {
	Phase   string `json:"phase"`
	Message string `json:"message,omitempty"`
	Done    int64  `json:"done,omitempty"`
	Total   int64  `json:"total,omitempty"`
}

// Result is POST PathResult{mac}'s body.
type Result struct {
	OK    bool   `json:"ok"`
	Error string `json:"error,omitempty"`
}

// Booted is POST PathBooted{mac}'s body, from the role OS's first boot.
type Booted struct {
	Hostname string `json:"hostname"`
	Address  string `json:"address"`
}
