/// The role controller starts and stops the application through this.
extension Supervisor: SupervisedApplication {}
