# The geoha image: one static binary in an empty image.
#
# No base image can be pulled here, so the binary is built on the host first and
# staged next to this file by `scripts/image.sh`:
#   RUSTFLAGS="-C target-feature=+crt-static -C relocation-model=static" \
#     cargo build --profile image --target x86_64-unknown-linux-gnu -p geoha
# `relocation-model=static` links a static non-PIE executable (as Go does by default):
# no run-time relocations (-0.35 MB), at the cost of ASLR for the binary's own code.
# The binary resolves nothing by name at run time except the optional public-IP
# lookup, which degrades to "Error" without DNS.
FROM scratch
COPY geoha /geoha
# A numeric non-root user: scratch has no /etc/passwd.
USER 65532:65532
EXPOSE 8080
ENTRYPOINT ["/geoha"]
CMD ["api", "--listen", "0.0.0.0:8080"]
