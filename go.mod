module github.com/hutchbox/hutch

go 1.26.0

require (
	github.com/containerd/cgroups/v3 v3.1.3
	github.com/stretchr/testify v1.12.1
	golang.org/x/net v0.62.0
	golang.org/x/sys v0.50.0
)

require (
	github.com/moby/sys/userns v0.1.0 // indirect
	go.yaml.in/yaml/v3 v3.0.5 // indirect
)
