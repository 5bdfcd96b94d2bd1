# Power loss during the restore: the next boot resumes it (pgBackRest --delta) and completes; no
# receipt is written before the verify step.
{common}:
common.standard {
  name = "crash-mid-restore";
  globalTimeout = 2400;
}
