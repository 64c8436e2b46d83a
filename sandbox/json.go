package sandbox

import (
	"encoding/json"
)

// resultJSON is the JSON form of a Result, with snake_case keys and times
// in seconds.
type resultJSON struct {
	Status          Status            `json:"status"`
	ExitCode        int               `json:"exit_code"`
	Signal          int               `json:"signal"`
	SignalName      string            `json:"signal_name,omitempty"`
	WallTimeS       float64           `json:"wall_time_s"`
	CPUTimeS        float64           `json:"cpu_time_s"`
	MemoryPeakBytes int64             `json:"memory_peak_bytes"`
	OOMKills        int64             `json:"oom_kills"`
	StdoutTruncated bool              `json:"stdout_truncated"`
	StderrTruncated bool              `json:"stderr_truncated"`
	Enforced        map[string]string `json:"enforced,omitempty"`
}

// MarshalJSON encodes the result without its output, as
//
//	{"status":"ok","exit_code":0,"signal":0,"wall_time_s":0.002,
//	 "cpu_time_s":0.001,"memory_peak_bytes":1048576,...}
func (r *Result) MarshalJSON() ([]byte, error) {
	j := resultJSON{
		Status:          r.Status,
		ExitCode:        r.ExitCode,
		Signal:          int(r.Signal),
		WallTimeS:       r.WallTime.Seconds(),
		CPUTimeS:        r.CPUTime.Seconds(),
		MemoryPeakBytes: r.MemoryPeak,
		OOMKills:        r.OOMKills,
		Enforced:        r.Enforced,
		StdoutTruncated: r.StdoutTruncated,
		StderrTruncated: r.StderrTruncated,
	}
	j.SignalName = r.SignalName()
	return json.Marshal(j)
}

// SignalName is the conventional name of the signal that ended the
// command, such as "SIGKILL", or "" when none did.
func (r *Result) SignalName() string {
	if r.Signal == 0 {
		return ""
	}
	return signalName(r.Signal)
}
