// Package api owns the gate HTTP API's wire format: the routes the gate
// serves and the installer and the role OS call, and the JSON bodies on
// them. The gate (pxe/httpd) and its clients (installer/gateclient) both
// import it, so the two sides cannot drift apart; what each side checks
// of what it receives stays with that side.
package api

import (
	"time"

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
	// PathPhase and PathHealth, like PathBooted, are reports of an
	// installed machine: on the TLS port only, with its certificate.
	PathPhase  = "/api/v1/phase/"
	PathHealth = "/api/v1/health/"
	// PathVaultUnseal is a storage node asking the gate, with its
	// certificate, to unseal its Vault (initialising the lab's Vault the
	// first time); POST, no body, VaultUnseal in answer.
	PathVaultUnseal = "/api/v1/vault-unseal/"
)

// TLSPort is the gate's port for the reports of installed machines, which
// present their certificate (mutual TLS); the installer API and the files
// stay on the plain HTTP port, where iPXE can reach them.
const TLSPort = 8443

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
	// Reinstall: the gate installed this machine before and was asked to
	// again (kiln gate reinstall), so each disk gets its plan's Reinstall
	// action: the lab's data on it (an OSD) is kept.
	Reinstall bool `json:"reinstall,omitempty"`
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

// Statuses of a first-boot phase in a Phase report.
const (
	// PhaseRunning: the phase started (no Task), or is about to run
	// Task.
	PhaseRunning = "running"
	// PhaseDone: every task of the phase is done.
	PhaseDone = "done"
	// PhaseFailed: Task failed with Error; the phase runs again at the
	// next start of the first-boot service.
	PhaseFailed = "failed"
)

// Phase is POST PathPhase{mac}'s body: the start of a first-boot phase
// (running, no task), the progress of one of its tasks (running, with the
// task), or its result (done, or failed with the failing task and its
// error).
type Phase struct {
	Phase   string `json:"phase"`
	Status  string `json:"status"`
	Task    string `json:"task,omitempty"`
	Message string `json:"message,omitempty"`
	Error   string `json:"error,omitempty"`
}

// Health statuses of a service.
const (
	HealthOK       = "ok"
	HealthWarn     = "warn"
	HealthFailed   = "failed"
	HealthStarting = "starting"
)

// Health is POST PathHealth{mac}'s body: the health of the machine's
// services as it sees them now; each report replaces the last.
type Health struct {
	Services []Service `json:"services"`
	// NetbootNext: the machine's firmware netboots at its next boot, that
	// one only (a UEFI machine's BootNext names its PXE entry), because
	// the gate asked (HealthAnswer).
	NetbootNext bool `json:"netboot_next,omitempty"`
	// Boot is when the machine's running system started (its kernel's
	// start by its clock): the gate's only word of a power-on that did not
	// netboot (a UEFI machine boots its disk first).
	Boot time.Time `json:"boot,omitzero"`
}

// HealthAnswer is the gate's answer to a Health report (200; 204 says
// nothing to do).
type HealthAnswer struct {
	// Netboot: the gate has the machine re-armed (kiln gate reinstall).
	// A machine whose firmware boots its disk first (UEFI, see
	// installer/efiboot) makes its next boot a netboot, so that the next
	// power-on installs it; one that netboots first (BIOS) needs nothing.
	Netboot bool `json:"netboot,omitempty"`
}

// Service is one service's health in a Health report.
type Service struct {
	Name   string `json:"name"`
	Status string `json:"status"`
	Detail string `json:"detail,omitempty"`
}

// VaultUnseal is POST PathVaultUnseal{mac}'s answer: whether the node's
// Vault is sealed now, and why when it is.
type VaultUnseal struct {
	Sealed  bool   `json:"sealed"`
	Message string `json:"message,omitempty"`
	// Selftest says, once unsealed, what the gate wrote through this
	// Vault and read back through it (every node's secret of the lab's
	// self-test engine); SelftestError why that failed.
	Selftest      string `json:"selftest,omitempty"`
	SelftestError string `json:"selftest_error,omitempty"`
	// Action, when set, is what the node must do before it asks again
	// (VaultResetStorage, VaultRestart).
	Action string `json:"action,omitempty"`
}

// VaultUnseal actions, after a failed first init of the lab's Vault (see
// pxe/vault.AttemptFile).
const (
	// VaultResetStorage: stop Vault, delete its storage prefix in
	// Consul (everything the failed init wrote), start Vault, ask again.
	VaultResetStorage = "reset-storage"
	// VaultRestart: restart Vault, which then reads its storage afresh
	// (a Vault caches that its storage is initialised), and ask again.
	VaultRestart = "restart"
)

// Bounds of the reports of installed machines: the gate refuses a report
// beyond them (400), so a client clips its free text to MaxText first.
const (
	// MaxName bounds a phase, task or service name (bytes).
	MaxName = 64
	// MaxText bounds a message, error or detail (bytes): enough for the
	// tail of a failing command's output.
	MaxText = 2048
	// MaxServices bounds the services of one Health report.
	MaxServices = 32
)
