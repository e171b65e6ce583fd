use super::CliError;

pub fn run() -> Result<(), CliError> {
    print!("{}", crate::api::crd::crd_yaml()?);
    Ok(())
}
