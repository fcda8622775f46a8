package firstboot

// BinaryPath is where image/rootfs installs kiln-firstboot in a role OS.
const BinaryPath = "/usr/local/sbin/kiln-firstboot"

// UnitName is the systemd unit image/rootfs installs and enables.
const UnitName = "kiln-firstboot.service"

// Unit is kiln-firstboot.service. It runs at every boot: finished tasks
// are recorded and skipped, so a boot after a power cut finishes the job.
// A failed phase is retried without a reboot: the service restarts on
// failure every RestartSec, with no start limit (systemd's default gives
// up after 5 starts in 10 s, which would leave a failed phase failed
// until someone reboots), so the gate's page shows the phase failing
// with its error and its attempts counting up, never silently skipped.
// Type=oneshot allows Restart=on-failure since systemd 244 (bookworm has
// 252).
const Unit = `[Unit]
Description=kiln first boot (grow state, wait for the address, report to the gate)
Wants=network-online.target
After=network-online.target local-fs.target
StartLimitIntervalSec=0

[Service]
Type=oneshot
RemainAfterExit=yes
ExecStart=` + BinaryPath + `
Restart=on-failure
RestartSec=30s
StandardOutput=journal+console
StandardError=journal+console

[Install]
WantedBy=multi-user.target
`

// The health report (health.go): kiln-health.timer runs kiln-health.service
// every HealthInterval, which runs `kiln-firstboot health` once.
const (
	HealthUnitName  = "kiln-health.service"
	HealthTimerName = "kiln-health.timer"
	// HealthInterval is how long after a report ends the next starts.
	// (Two minutes: each report runs the ceph, consul and vault CLIs,
	// which take many seconds of CPU on the rehearsal's emulated
	// machines; three nodes reporting every minute kept two cores busy.)
	HealthInterval = "2min"
)

// HealthUnit runs one health report. It does not wait for the first boot:
// while a phase is still running the report says so. Its console output
// is one line when a service's status changes, never a line per report.
const HealthUnit = `[Unit]
Description=kiln health report (the services' state, to the gate)
Wants=network-online.target
After=network-online.target

[Service]
Type=oneshot
ExecStart=` + BinaryPath + ` health
TimeoutStartSec=15min
StandardOutput=journal+console
StandardError=journal
`

// HealthTimer starts HealthUnit a minute after boot, then HealthInterval
// after each report ends (OnUnitInactiveSec: a slow report is never run
// twice at once). AccuracySec=1s: the default minute would make the
// gate's view of a lost node a minute later than needed.
const HealthTimer = `[Unit]
Description=kiln health report every ` + HealthInterval + `

[Timer]
OnBootSec=1min
OnUnitInactiveSec=` + HealthInterval + `
AccuracySec=1s

[Install]
WantedBy=timers.target
`
